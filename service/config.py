"""Settings only the service reads; the shared ones live in `khet.settings`.

Same `KHET_` prefix, same rule: defaults that need no server.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KHET_", extra="ignore")

    heartbeat_seconds: float = Field(
        5.0, gt=0, description="How often a running job says it is alive"
    )
    stale_seconds: float = Field(
        60.0, gt=0, description="A running job silent this long is re-queued"
    )
    queue_name: str = Field("khet", description="Huey queue name (one per deployment)")
    session_days: int = Field(14, ge=1, description="How long a web session lasts")
    cookie_secure: bool | None = Field(
        None,
        description="Send the session cookie over HTTPS only; default: when the request came "
        "over HTTPS (behind a proxy: X-Forwarded-Proto from a trusted address)",
    )
    token_days: int = Field(
        365, ge=0, description="How long a new API token is valid; 0 = until revoked"
    )
    public_url: str | None = Field(
        None,
        description="The address users reach the service at (https://khet.example.org); "
        "absolute URLs (TileJSON) use it instead of the request's Host header",
    )
    # Limits (README "Limits"): each one is what a small server can give one request or user.
    max_body_kb: int = Field(
        1024, ge=1, description="Largest request body except uploads (JSON, forms), in KB"
    )
    max_boundary_vertices: int = Field(
        10_000, ge=4, description="Most points a field boundary may have"
    )
    max_jobs_per_user: int = Field(
        10, ge=1, description="Analyses one user may have queued or running at once"
    )
    max_result_pixels: int = Field(
        1 << 26, ge=1, description="Largest raster a device may send as a result, in pixels"
    )
    login_failures_per_account: int = Field(
        10, ge=1, description="Failed logins per account in login_window_minutes before a pause"
    )
    login_failures_per_address: int = Field(
        50, ge=1, description="Failed logins per client address in login_window_minutes"
    )
    login_window_minutes: int = Field(15, ge=1, description="Window of the login rate limit")
    tile_cache: int = Field(1024, ge=0, description="Rendered map tiles kept in memory; 0 = off")
    max_attempts: int = Field(
        3, ge=1, description="A job re-queued after a dead worker this often, then failed"
    )


def service_settings() -> ServiceSettings:
    """The service's settings from KHET_* environment variables."""
    return ServiceSettings()
