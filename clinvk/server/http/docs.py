"""``/docs``: Swagger UI for ``/openapi.json``, served from the swagger-ui-bundle package — no CDN,
so it works offline and behind strict content-security policies."""

from __future__ import annotations

import json
from html import escape

from flask import Blueprint, Response, abort, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)

ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                    "favicon-32x32.png", "favicon-16x16.png", "index.css", "oauth2-redirect.html"})

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>clinvk API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}" sizes="32x32">
  <style>body {{ margin: 0; }}</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script src="{init}"></script>
</body>
</html>
"""

INIT = """window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: {spec},
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  }});
}};
"""


@bp.get("/docs")
def docs_page():
    html = PAGE.format(css=escape(url_for("docs.asset", name="swagger-ui.css")),
                       icon=escape(url_for("docs.asset", name="favicon-32x32.png")),
                       bundle=escape(url_for("docs.asset", name="swagger-ui-bundle.js")),
                       preset=escape(url_for("docs.asset", name="swagger-ui-standalone-preset.js")),
                       init=escape(url_for("docs.initializer")))
    return Response(html, mimetype="text/html")


@bp.get("/docs/swagger-initializer.js")
def initializer():
    script = INIT.format(spec=json.dumps(url_for("meta.openapi")))
    return Response(script, mimetype="text/javascript")


@bp.get("/docs/<name>")
def asset(name: str):
    if name not in ASSETS:
        abort(404)
    response = send_from_directory(swagger_ui_path, name, max_age=86400)
    return response
