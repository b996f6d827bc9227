"""Chat messages; every fifth new on-the-record message triggers a low-priority analysis."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from focus_app.api.analysis.schemas import CONTEXT_TYPE, AnalysisDecisionSchema, rules
from focus_app.api.auth import current_user_id, handles_user_row, new_user_timezone, require_user
from focus_app.api.base import Args, Blueprint
from focus_app.extensions import db_session, db_statement
from focus_app.services.analysis import triggers
from workers.publish import publish_analysis_runs

URL_PREFIX = "/chat"
blp = Blueprint("chat", __name__, description="Chat messages (seed 002 analysis trigger)")
blp.before_request(require_user)


class ChatMessageCreateSchema(ma.Schema):
    context_type = ma.fields.String(required=True, validate=CONTEXT_TYPE, metadata={"example": "romantic"})
    content = ma.fields.String(required=True, validate=validate.Length(min=1, max=8000))
    off_the_record = ma.fields.Boolean(load_default=False)


class ChatMessageSchema(ma.Schema):
    id = ma.fields.UUID()
    context_type = ma.fields.String()
    content = ma.fields.String()
    off_the_record = ma.fields.Boolean()
    created_at = ma.fields.DateTime()


class ChatMessageCreatedSchema(ma.Schema):
    message = ma.fields.Nested(ChatMessageSchema)
    analysis = ma.fields.Nested(AnalysisDecisionSchema)


@blp.route("/messages", methods=["POST"])
@blp.arguments(ChatMessageCreateSchema)
@blp.response(201, ChatMessageCreatedSchema)
@handles_user_row
def create_message(body: Args) -> dict[str, Any]:
    """Store a chat message; may enqueue a background analysis (never waits for it)"""
    with db_statement() as connection:
        message, decision = triggers.add_chat_message(
            connection, db_session(), current_user_id(), new_user_timezone=new_user_timezone(),
            rules=rules(), **body,
        )  # fmt: skip
    publish_analysis_runs(decision.to_publish)
    return {"message": message, "analysis": decision.as_dict()}
