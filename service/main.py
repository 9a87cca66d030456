"""The FastAPI application: `create_app()`.

Routers live in service/routers (one per resource); the HTML pages, when present, come from
service/routers/pages.py. Every error leaves as JSON `{"error": code, "detail": message}`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from khet import __version__
from khet.errors import KhetError

log = logging.getLogger("khet.service")

DESCRIPTION = """
Khet turns drone imagery of a field into a field map: where the crop is, where weeds are, where
the crop is weak. Authenticate with `Authorization: Bearer <token>` (make one with
`khet token create EMAIL` or `POST /api/v1/tokens`) or with the session cookie set by
`POST /api/v1/session`.

**Uploads** are resumable and idempotent: `POST /api/v1/uploads` declares a file (name, size,
SHA-256), `PUT /api/v1/uploads/{id}` sends chunks with `Content-Range: bytes START-END/TOTAL`, and
`POST /api/v1/fields/{id}/flights` turns complete uploads into a flight and queues its analysis.
Browsers and scripts can instead post multipart files to `/api/v1/fields/{id}/flights/upload`.

Errors are JSON: `{"error": "<code>", "detail": "<what is wrong, for a person>"}`. Someone else's
farm, field, flight or upload is "not found" (404), never "forbidden".
"""


def _problem(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None, **extra
) -> JSONResponse:
    return JSONResponse(
        {"error": code, "detail": detail, **extra}, status_code=status, headers=headers
    )


def served_app() -> FastAPI:
    """The app in each `khet serve` process (the parent process ran the migrations)."""
    _die_with_serve()
    return create_app(migrate=False)


def _die_with_serve() -> None:
    """A web process that uvicorn started for `khet serve` ends when `khet serve` does, even
    when it is killed with `kill -9` (Linux: PR_SET_PDEATHSIG), instead of serving on alone."""
    import os
    import signal
    import sys

    parent = os.environ.get("KHET_SERVE_PID")
    if sys.platform != "linux" or parent != str(os.getppid()):
        return  # not a child of khet serve (a single process, a test)
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != parent:  # it died before the call above
        os._exit(0)


def _http_protocol():
    import asyncio
    import socket

    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class NoDelayHTTP(AutoHTTPProtocol):
        """uvicorn's HTTP protocol with TCP_NODELAY on every connection.

        With several processes uvicorn binds the shared socket itself, without saying it is
        TCP, so asyncio leaves Nagle's algorithm on: every small response then waits for the
        client's delayed ACK, 40 ms per request on Linux (measured: 44 ms for a cached tile).
        """

        def connection_made(self, transport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

        def connection_lost(self, exc) -> None:
            """Hand the request body bytes that arrived before a dropped connection to the app,
            then tell it of the disconnect.

            uvicorn answers `receive()` with a disconnect as soon as the connection is lost,
            dropping the body bytes it had read but not yet handed over: on a link that drops
            every few kB that is every byte of the chunk. An upload keeps the bytes of a chunk
            that arrived (routers/uploads.py), so they must reach it."""
            cycle = getattr(self, "cycle", None)
            body = getattr(cycle, "body", None)
            if cycle is None or cycle.response_complete or not body:
                super().connection_lost(exc)
                return
            self.cycle = None  # uvicorn's bookkeeping of the lost connection, without the cycle
            try:
                super().connection_lost(exc)
            finally:
                self.cycle = cycle
            cycle.message_event.set()  # a waiting receive() returns the body first
            loop = asyncio.get_event_loop()

            def then_disconnect(tries: int = 0) -> None:
                if cycle.body and not cycle.response_complete and tries < 300:
                    loop.call_later(0.01, then_disconnect, tries + 1)  # not taken yet
                    return
                if not cycle.response_complete:
                    cycle.disconnected = True
                cycle.message_event.set()

            loop.call_soon(then_disconnect)

    return NoDelayHTTP


def __getattr__(name: str):
    # `uvicorn --http khet.service.main:NoDelayHTTP` imports it by name; built on first use so
    # that importing this module does not import uvicorn.
    if name == "NoDelayHTTP":
        return _http_protocol()
    raise AttributeError(name)


def _import_what_requests_use() -> None:
    """Import now what request threads would otherwise import on first use.

    Two request threads importing the same module at the same moment can see it half
    initialised ("cannot import name ... from partially initialized module"): a fresh server
    answered its first imagery tile with 500. Service modules import their libraries at the top;
    these are the imports that libraries themselves put off until first use.
    """
    import anyio
    from khet.service.db import get_engine
    from khet.service.security import hash_password
    from PIL import Image

    Image.init()  # Pillow's format plugins, loaded on the first open or save
    _ = anyio.open_file  # anyio's file helpers (FileResponse), imported on first access
    get_engine()  # the SQLAlchemy dialect, imported when the engine is made
    hash_password("warm-up")  # pwdlib loads its argon2 hasher when first used
    _import_font_tables()


def _import_font_tables() -> None:
    """fontTools (WeasyPrint's font subsetting, for the PDF report) imports the module of each
    font table when a font first uses it: all 110 of them now, in 0.13 s. On a fresh install
    (fontTools 4.69.1) the PDF report's request imported four of them, which
    tests/service/test_cold_start.py caught."""
    import importlib
    import pkgutil

    try:
        tables = importlib.import_module("fontTools.ttLib.tables")
    except ImportError:  # the PDF report's libraries are not installed
        return
    for m in pkgutil.iter_modules(tables.__path__):
        try:
            importlib.import_module(f"fontTools.ttLib.tables.{m.name}")
        except ImportError:  # a table whose optional codec is not installed
            continue


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Khet API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/api/v1/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/v1/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/v1/docs/init.js"></script></body></html>
"""
DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, presets: [SwaggerUIBundle.presets.apis]});
"""


def _docs(app: FastAPI) -> None:
    """Swagger UI from the fastapi-offline package's copy (the service must work with no
    internet), started by a script file rather than an inline one (the CSP allows no inline
    script)."""
    from importlib.util import find_spec
    from pathlib import Path

    from fastapi.responses import HTMLResponse, Response
    from fastapi.staticfiles import StaticFiles

    spec = find_spec("fastapi_offline")
    assets = Path(spec.origin).parent / "static"  # type: ignore[union-attr, arg-type]
    app.mount("/api/v1/docs/assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/api/v1/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML)

    @app.get("/api/v1/docs/init.js", include_in_schema=False)
    def docs_init() -> Response:
        return Response(DOCS_INIT, media_type="text/javascript")


def create_app(*, migrate: bool = True) -> FastAPI:
    """The app. `migrate` brings the database schema up to date first (idempotent)."""
    from khet.service.db import migrate as run_migrations

    from khet.settings import apply_gdal_env

    apply_gdal_env()
    if migrate:
        run_migrations()
    from khet.service import storage
    from khet.service.config import service_settings
    from khet.service.errors import CHALLENGE, headers_for, status_for
    from khet.service.middleware import Hardening

    _import_what_requests_use()
    svc = service_settings()
    app = FastAPI(
        title="Khet",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served below from local files: no CDN
        redoc_url=None,
    )
    app.add_middleware(Hardening, public_url=svc.public_url, max_body_kb=svc.max_body_kb)
    _docs(app)

    @app.exception_handler(KhetError)
    async def khet_error(_: Request, exc: KhetError) -> JSONResponse:
        status = status_for(exc)
        extra = getattr(exc, "extra", {})
        message = storage.public_message(exc.message)  # the names the web and API use
        return _problem(status, exc.code, message, headers_for(exc, status), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        safe = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg")),
                "type": str(e.get("type")),
            }
            for e in errors[:20]
        ]
        return _problem(422, "invalid", "; ".join(parts) or "The request is invalid.", errors=safe)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            413: "too_large",
        }
        detail = str(exc.detail)
        if exc.status_code == 413:
            detail = (
                f"The request body is larger than the {svc.max_body_kb} KB this service "
                "accepts here (KHET_MAX_BODY_KB); send imagery as an upload."
            )
        # The exception's headers go out with it: Allow on a 405, WWW-Authenticate on a 401.
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers = {**CHALLENGE, **headers}
        return _problem(exc.status_code, codes.get(exc.status_code, "error"), detail, headers)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _problem(500, "internal", "Something went wrong on the server; it has been logged.")

    from khet.service.routers import auth, farms, flights, health, management, tiles, uploads

    # Every body but the two upload routes' (which stream to disk and count bytes against
    # KHET_MAX_UPLOAD_MB themselves): JSON and forms are parsed in memory. Set per router, not
    # on the app, so that a 413 passes the middleware that makes it JSON.
    limit = svc.max_body_kb * 1024
    for module in (health, auth, farms, uploads, flights, management, tiles):
        app.include_router(module.router, max_body_size=limit)
    try:
        pages = importlib.import_module("khet.service.routers.pages")
    except ModuleNotFoundError as e:
        if e.name != "khet.service.routers.pages":
            raise
    else:
        app.include_router(pages.router, max_body_size=limit)
        if hasattr(pages, "mount"):
            pages.mount(app)
    return app
