"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from khet.service.db import get_engine
from khet.service.jobs import queue_ok, worker_alive
from khet.vision.bundle import list_bundles
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process answers")
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Database, job queue, a live job worker and models are usable",
    responses={503: {"description": "Something the service needs is missing"}},
)
def readyz():
    """Readiness: database, job queue, a live worker and models; 503 with what is missing."""
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:
        checks["database"] = f"unreachable: {type(e).__name__}"
    checks["queue"] = "ok" if queue_ok() else "unreachable"
    try:
        checks["worker"] = (
            "ok"
            if worker_alive()
            else "no job worker has reported in the last seconds (khet worker, or khet serve "
            "without --no-worker)"
        )
    except Exception as e:
        checks["worker"] = f"unknown: {type(e).__name__}"
    try:
        checks["models"] = "ok" if list_bundles() else "no model bundles found (KHET_MODELS_DIR)"
    except Exception as e:
        checks["models"] = f"unusable: {e}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
    )
