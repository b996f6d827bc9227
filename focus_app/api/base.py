"""Blueprint base: what every endpoint refuses, once.

- Malformed JSON, JSON nested deeper than MAX_JSON_DEPTH (the parser and every walk over the body
  would otherwise recurse into a RecursionError, a 500), a NUL character or a lone UTF-16 surrogate
  anywhere in a request (PostgreSQL cannot store either; psycopg2 raised and the API answered 500):
  422 naming the field.
- A body sent with a Content-Type other than JSON: 415. Dropping it silently started sessions with
  null fields.
- A query parameter the endpoint does not declare: 422 naming it, so a typo (`?from=`) never
  silently widens a result.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import flask
import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

NUL_MESSAGE = "must not contain NUL characters"
SURROGATE_MESSAGE = "must not contain lone UTF-16 surrogates"
UNKNOWN_MESSAGE = "Unknown field."
MAX_JSON_DEPTH = 32
DEPTH_MESSAGE = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
UNSUPPORTED_MEDIA_MESSAGE = "send the body as JSON with Content-Type: application/json"

# A view's loaded body or query arguments, as its schema produced them.
Args = dict[str, typing.Any]


def text_problem(text: str) -> str | None:
    """Why PostgreSQL could not store this text (None when it can)."""
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def unstorable_fields(data: object) -> Iterator[tuple[str, str]]:
    """(dotted name, problem) of the strings, keys or values, that PostgreSQL cannot store; a
    body nested deeper than MAX_JSON_DEPTH is reported once as ("", DEPTH_MESSAGE). Iterative: a
    walk must not recurse into the depth it is there to refuse."""
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                yield path or "_", problem
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                yield "", DEPTH_MESSAGE
                return
            if isinstance(item, Mapping):
                getlist = getattr(item, "getlist", None)  # query strings: every value of a repeated key
                for key in item:
                    name = f"{path}.{key}" if path else str(key)
                    problem = text_problem(str(key))
                    if problem:
                        yield name, problem
                    for value in getlist(key) if getlist else [item[key]]:
                        stack.append((value, name, depth + 1))
            else:
                for index, value in enumerate(item):
                    stack.append((value, f"{path}.{index}" if path else str(index), depth + 1))


def reject_unstorable(location: str, data: object) -> None:
    found: dict[str, list[str]] = {}
    for name, problem in unstorable_fields(data):
        if problem == DEPTH_MESSAGE:
            abort(422, messages={location: [DEPTH_MESSAGE]})
        problems = found.setdefault(name, [])
        if problem not in problems:
            problems.append(problem)
    if found:
        abort(422, messages={location: dict(sorted(found.items()))})


def reject_unknown_query_arguments() -> None:
    """before_request of the API: an endpoint without query arguments refuses every one (those
    with a query schema refuse unknown ones through the parser)."""
    view = flask.current_app.view_functions.get(flask.request.endpoint or "")
    if view is None or flask.request.method == "OPTIONS":
        return  # a 404 or 405 says more; a CORS preflight carries the real request's URL
    if flask.request.args and not getattr(view, "takes_query_arguments", False):
        abort(422, messages={"query": {name: [UNKNOWN_MESSAGE] for name in sorted(flask.request.args)}})


def apply_body_limit() -> None:
    """before_request of the app: a view marked with Blueprint.body_limit reads a larger body than
    MAX_CONTENT_LENGTH (checked by Werkzeug when the body is read, so before any view runs)."""
    view = flask.current_app.view_functions.get(flask.request.endpoint or "")
    limit = getattr(view, "max_body_bytes", None)
    if limit is not None:
        flask.request.max_content_length = limit


class JsonErrorParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 422
    DEFAULT_UNKNOWN_BY_LOCATION = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def pre_load(
        self, location_data: typing.Any, *, schema: ma.Schema, req: flask.Request, location: str
    ) -> typing.Any:
        reject_unstorable(location, location_data)
        return location_data

    def _raw_load_json(self, req: flask.Request) -> typing.Any:
        body = req.get_data(cache=True)
        if not is_json_request(req):
            if body:
                abort(415, message=UNSUPPORTED_MEDIA_MESSAGE)
            return core.missing
        try:
            return core.parse_json(body)
        except RecursionError:
            abort(422, messages={"json": [DEPTH_MESSAGE]})

    def _handle_invalid_json_error(
        self,
        error: json.JSONDecodeError | UnicodeDecodeError,
        req: flask.Request,
        *args: typing.Any,
        **kwargs: typing.Any,
    ) -> typing.NoReturn:
        abort(422, messages={"json": ["Invalid JSON body."]})


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonErrorParser()

    def arguments(
        self, schema: ma.Schema | type[ma.Schema], *args: typing.Any, **kwargs: typing.Any
    ) -> typing.Any:
        """One schema instance per endpoint (given a class, webargs would build one per request);
        a JSON body documents its 415, query arguments mark the view as taking them."""
        if isinstance(schema, type):
            schema = schema()
        location = kwargs.get("location", "json")
        parse = super().arguments(schema, *args, **kwargs)

        def decorator(view: typing.Callable[..., typing.Any]) -> typing.Any:
            wrapped = parse(view)
            if location == "json":
                responses = wrapped._apidoc["arguments"]["responses"]
                responses[415] = "UNSUPPORTED_MEDIA_TYPE"
            if location in ("query", "querystring"):
                wrapped.takes_query_arguments = True
            return wrapped

        return decorator

    def body_limit(self, max_bytes: int) -> typing.Callable[[typing.Any], typing.Any]:
        """A body limit of its own for one endpoint (documented as `x-max-body-bytes`)."""

        def decorator(view: typing.Any) -> typing.Any:
            view.max_body_bytes = max_bytes
            return self.doc(**{"x-max-body-bytes": max_bytes})(view)

        return decorator


class UtcDateTime(ma.fields.AwareDateTime):
    """An aware datetime handed on in UTC: PostgreSQL refuses offsets beyond +-15:59 that ISO allows."""

    def _deserialize(
        self, value: typing.Any, attr: str | None, data: typing.Any, **kwargs: typing.Any
    ) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ma.ValidationError("is out of range") from None
