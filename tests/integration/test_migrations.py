"""The schema comes only from Alembic; the models must describe exactly that schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from focus_app.migrate import alembic_config
from focus_app.models import Base


def test_models_and_migrations_agree(app):
    with app.extensions["db"].engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_migrations_form_one_line(test_settings):
    script = ScriptDirectory.from_config(alembic_config(test_settings.database_url))

    assert len(script.get_heads()) == 1
