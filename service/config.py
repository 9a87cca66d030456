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
    cookie_secure: bool = Field(False, description="Send the session cookie over HTTPS only")
    tile_cache: int = Field(1024, ge=0, description="Rendered map tiles kept in memory; 0 = off")
    max_attempts: int = Field(
        3, ge=1, description="A job re-queued after a dead worker this often, then failed"
    )


def service_settings() -> ServiceSettings:
    return ServiceSettings()
