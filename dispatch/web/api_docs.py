"""The API's description: ``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at
``/redoc``, for logged-in users, with their scripts served from this process
(fastapi-offline's copies), never from a CDN: a control room without internet still
reads its API. The pages' own script is ``static/docs.js`` (the CSP allows no inline one).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from dispatch.web.auth import Viewer

# fastapi-offline ships Swagger UI and ReDoc; only these files are served from it.
ASSETS: Final = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                 "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
Asset = Literal["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js",
                "favicon.png"]

router = APIRouter(include_in_schema=False)

_SWAGGER: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Estate Dispatch API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon.png"></head>
<body><div id="swagger-ui" data-openapi="/openapi.json"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>"""

_REDOC: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Estate Dispatch API</title>
<link rel="icon" href="/docs/assets/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script></body></html>"""


@router.get("/openapi.json")
def openapi(request: Request, _: Viewer) -> JSONResponse:
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs", response_class=HTMLResponse)
def swagger(_: Viewer) -> str:
    return _SWAGGER


@router.get("/redoc", response_class=HTMLResponse)
def redoc(_: Viewer) -> str:
    return _REDOC


@router.get("/docs/assets/{name}")
def asset(name: Annotated[Asset, Path()], _: Viewer) -> FileResponse:
    path = files("fastapi_offline") / "static" / name
    return FileResponse(str(path), media_type=ASSETS[name])
