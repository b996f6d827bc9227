"""Blueprint base: malformed JSON is bad input (422 with a field error), like any other."""

from __future__ import annotations

import json
import typing

import flask
import flask_smorest
from webargs.flaskparser import FlaskParser, abort


class JsonErrorParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 422

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
