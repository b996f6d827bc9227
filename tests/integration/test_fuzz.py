"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis),
in process through the WSGI app against the real PostgreSQL and Redis.

Every operation of the document gets FUZZ_EXAMPLES valid and FUZZ_EXAMPLES invalid generated
requests (bounded for CI; raise the variable for a longer hunt), sent with a user token and the
admin key: no response may be a 5xx, and every response must match the document (status code,
content type, body schema).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from focus_app.api.auth import issue_token
from tests.conftest import TEST_ADMIN_KEY, TEST_SECRET
from tests.integration.openapi_ops import select

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("op", select(lambda op: True))
def test_api_conforms_to_its_document_and_never_answers_5xx(api_schema, op, mode):
    if mode is GenerationMode.NEGATIVE and not (op.has_body or op.parameters):
        pytest.skip("nothing to make invalid: no parameters and no body")
    operation = api_schema[op.template][op.method]
    headers = {"Authorization": f"Bearer {issue_token(TEST_SECRET, 'fuzzer')}", "X-API-Key": TEST_ADMIN_KEY}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def fuzz(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    fuzz()


def test_health_and_ready_bodies_are_documented(client):
    """Found by the fuzzer: /ready's body matched no documented response."""
    paths = client.get("/api/openapi.json").json["paths"]
    ready = paths["/api/v1/ready"]["get"]["responses"]

    assert set(ready) >= {"200", "503"}
    for status in ("200", "503"):
        (media,) = ready[status]["content"].values()
        assert "$ref" in media["schema"]
    assert "200" in paths["/api/v1/health"]["get"]["responses"]
