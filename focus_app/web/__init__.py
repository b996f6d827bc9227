"""Browser pages served by the Flask app: the user's dashboard and the operator page, both drawn
from the JSON API.

Everything the pages need is served from here (Chart.js vendored under static/vendor), so they
work offline. The pages themselves hold no data: the dashboard authenticates with the user's
bearer token (localStorage), the operator page with the admin key (sessionStorage).
"""

from __future__ import annotations

from flask import Blueprint, Flask, render_template

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


def register_web(app: Flask) -> None:
    app.register_blueprint(web)
