"""The baseline of bench/load.py: a plain Flask hello-world under the same gunicorn settings."""

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/hello")
    def hello():
        return {"hello": "world"}

    return app
