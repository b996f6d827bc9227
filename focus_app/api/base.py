"""Blueprint base: malformed JSON is bad input (422 with a field error), like any other, and so is
a NUL character anywhere in a request: PostgreSQL cannot store it in text or JSONB, so letting it
through would turn bad input into a 500 (found by the fuzzer)."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import flask
import flask_smorest
import marshmallow as ma
from webargs.flaskparser import FlaskParser, abort

NUL_MESSAGE = "must not contain NUL characters"

# A view's loaded body or query arguments, as its schema produced them.
Args = dict[str, typing.Any]


def nul_fields(data: object, path: str = "") -> Iterator[str]:
    """Dotted names of the strings (keys or values) in decoded input that contain NUL."""
    if isinstance(data, str):
        if "\x00" in data:
            yield path or "_"
    elif isinstance(data, Mapping):
        getlist = getattr(data, "getlist", None)  # query strings: every value of a repeated key
        for key in data:
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                yield name
            for value in getlist(key) if getlist else [data[key]]:
                yield from nul_fields(value, name)
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            yield from nul_fields(item, f"{path}.{index}" if path else str(index))


def reject_nul(location: str, data: object) -> None:
    found = sorted(set(nul_fields(data)))
    if found:
        abort(422, messages={location: {name: [NUL_MESSAGE] for name in found}})


class JsonErrorParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 422

    def pre_load(
        self, location_data: typing.Any, *, schema: ma.Schema, req: flask.Request, location: str
    ) -> typing.Any:
        reject_nul(location, location_data)
        return location_data

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
        """One schema instance per endpoint: given a class, webargs would build one per request."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


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
