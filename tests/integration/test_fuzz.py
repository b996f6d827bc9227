"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis),
in process through the WSGI app against the real PostgreSQL and Redis.

Every operation of the document gets FUZZ_EXAMPLES valid and FUZZ_EXAMPLES invalid generated
requests (bounded for CI; raise the variable for a longer hunt), sent with a user token and the
admin key: no response may be a 5xx, and every response must match the document (status code,
content type, body schema). Every operation with a body also gets FUZZ_EXAMPLES hostile variants
of valid requests that a JSON-Schema generator never makes: a lone UTF-16 surrogate in a string or
a key, JSON nested 33 to 6,000 levels deep, and the body sent under another content type.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


HOSTILE = ("lone surrogate", "deep nesting", "wrong content type")
OTHER_CONTENT_TYPES = ("text/plain", "application/x-www-form-urlencoded", "application/xml", "text/csv")


def with_surrogate(body: object, data: st.DataObject) -> object:
    """The body with a lone surrogate spliced into one of its strings (or as a new key)."""
    surrogate = data.draw(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), label="surrogate")
    strings: list[tuple[object, object]] = []  # (container, key or index) of every string value

    def collect(node: object) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            if isinstance(value, str):
                strings.append((node, key))
            collect(value)

    collect(body)
    if not strings:
        return {**body, "note" + surrogate: "x"} if isinstance(body, dict) else [surrogate]
    container, key = data.draw(st.sampled_from(strings), label="string")
    text = container[key]  # type: ignore[index]
    at = data.draw(st.integers(0, len(text)), label="position")
    container[key] = text[:at] + surrogate + text[at:]  # type: ignore[index]
    return body


def deep_json(data: st.DataObject) -> str:
    depth = data.draw(st.integers(33, 6000), label="depth")
    if data.draw(st.booleans(), label="arrays"):
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("op", select(lambda op: op.has_body))
def test_hostile_bodies_are_client_errors_that_match_the_document(api_schema, client, op):
    operation = api_schema[op.template][op.method]
    headers = {"Authorization": f"Bearer {issue_token(TEST_SECRET, 'fuzzer')}", "X-API-Key": TEST_ADMIN_KEY}

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def fuzz(case, data):
        hostile = data.draw(st.sampled_from(HOSTILE), label="hostile")
        content_type, expected = "application/json", 422
        if hostile == "lone surrogate":
            # A copy: the case itself stays printable for schemathesis's report.
            raw = json.dumps(with_surrogate(copy.deepcopy(case.body), data))  # sent as \udXXX
        elif hostile == "deep nesting":
            raw = deep_json(data)
        else:
            raw = json.dumps(case.body)
            content_type, expected = data.draw(st.sampled_from(OTHER_CONTENT_TYPES), label="type"), 415
        response = client.open(
            case.formatted_path,
            method=case.method,
            query_string=case.query,
            data=raw,
            content_type=content_type,
            headers=headers,
        )
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == expected, (hostile, response.status_code, response.json)

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
