"""Browser pages served by the Flask app: the user's dashboard (charts drawn from the JSON API).

Everything the page needs is served from here (Chart.js vendored under static/vendor), so it
works offline; it authenticates with the same bearer token as the API, kept in localStorage.
"""

from __future__ import annotations

from flask import Blueprint, Flask, render_template

web = Blueprint(
    "web", __name__, template_folder="templates", static_folder="static", static_url_path="/static/web"
)


@web.get("/dashboard")
def dashboard():
    return render_template("dashboard.html")


def register_web(app: Flask) -> None:
    app.register_blueprint(web)
