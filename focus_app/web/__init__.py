"""Browser pages served by the Flask app: the user's dashboard and the operator page, both drawn
from the JSON API, and Swagger UI on the API's OpenAPI document.

Everything the pages need is served from here (Chart.js vendored under static/vendor, Swagger UI
from the pinned flask-swagger-ui package), so they work offline. The pages themselves hold no
data: the dashboard authenticates with the user's bearer token (localStorage), the operator page
with the admin key (sessionStorage).
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Flask, Response, render_template, send_from_directory, url_for

from focus_app.extensions import settings

web = Blueprint(
    "web", __name__, template_folder="templates", static_folder="static", static_url_path="/static/web"
)


@web.get("/dashboard")
def dashboard() -> str:
    return render_template("dashboard.html")


@web.get("/ops")
def operations() -> str:
    return render_template("ops.html", flower_url=settings().flower_url)


# Swagger UI's distribution files, as the flask-swagger-ui package ships them.
SWAGGER_UI_DIST = str(files("flask_swagger_ui") / "dist")


@web.get("/api/docs")
def api_docs() -> str:
    return render_template("api_docs.html", spec_url=url_for("api-docs.openapi_json"))


@web.get("/static/swagger-ui/<path:filename>")
def swagger_ui(filename: str) -> Response:
    return send_from_directory(SWAGGER_UI_DIST, filename, max_age=24 * 3600)


def register_web(app: Flask) -> None:
    app.register_blueprint(web)
