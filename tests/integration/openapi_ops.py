"""The API's operations as its own OpenAPI document lists them, so access tests cover every
endpoint, including ones added later, without a hand-kept list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache

from tests.conftest import make_settings

GLOBAL_SECURITY = [{"bearerAuth": []}]
DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    schemes: frozenset[str]
    path_params: dict[str, dict]
    has_body: bool
    parameters: int
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # the document's x-max-body-bytes, where it has one

    @property
    def id(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def user(self) -> bool:
        return "bearerAuth" in self.schemes

    @property
    def admin(self) -> bool:
        return "adminKey" in self.schemes

    def path(self, **values: str) -> str:
        """The URL with each path parameter filled by `values` or a well-formed placeholder."""
        url = self.template
        for name, schema in self.path_params.items():
            url = url.replace("{" + name + "}", values.get(name) or _placeholder(name, schema))
        return url


def _placeholder(name: str, schema: dict) -> str:
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if name == "week_of":
        return "2026-01-05"
    return "placeholder"


@cache
def operations() -> tuple[Operation, ...]:
    """Read from an app built on unreachable stores: the document needs no connection."""
    from focus_app import create_app

    app = create_app(make_settings("postgresql://unused@127.0.0.1:1/x", "redis://127.0.0.1:1/0"))
    spec = app.test_client().get("/api/openapi.json").json
    found = []
    for template, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            declared = shared + op.get("parameters", [])
            params = {p["name"]: p.get("schema", {}) for p in declared if p["in"] == "path"}
            security = op.get("security", spec.get("security", GLOBAL_SECURITY))
            found.append(
                Operation(
                    method.upper(),
                    template,
                    frozenset(name for requirement in security for name in requirement),
                    params,
                    "requestBody" in op,
                    len(declared),
                    op.get("x-max-body-bytes", DEFAULT_MAX_BODY_BYTES),
                )
            )
    return tuple(found)


def select(predicate) -> list:
    import pytest

    return [pytest.param(op, id=op.id) for op in operations() if predicate(op)]
