"""Settings shared by every part, from `KHET_*` environment variables.

The defaults need no server: SQLite and an on-disk job queue in the data folder.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KHET_", extra="ignore")

    data_dir: Path = Field(Path("khet-data"), description="Uploads, results, database, job queue")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    redis_url: str | None = Field(None, description="Use RedisHuey at this URL for jobs")
    models_dir: Path | None = Field(None, description="Folder of .onnx bundles; default: shipped")

    # Resources: a field device sets these low.
    threads: int = Field(0, ge=0, description="Inference threads; 0 = all cores")
    batch_size: int = Field(32, ge=1, le=1024)
    gdal_cache_mb: int = Field(
        64, ge=8, description="GDAL block cache; bounds memory on big rasters"
    )
    # 2^30 pixels (32768 x 32768) is a few minutes of analysis on 2 cores; a 100000 x 100000
    # raster (a few hundred KB when sparse) kept the only worker busy for hours.
    max_pixels: int = Field(
        1 << 30, ge=1, description="Largest image accepted, in pixels (width x height)"
    )
    # A photo is decoded whole; the process peaks at about 2.2 x its decoded size.
    max_decoded_mb: int = Field(
        512, ge=1, description="Largest JPEG/PNG (or band capture) decoded whole into memory"
    )
    index_max_size: int = Field(
        2048, ge=256, description="Index maps are written at input resolution up to this many px"
    )

    max_upload_mb: int = Field(4096, ge=1, description="Largest upload accepted")

    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'khet.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """The settings from KHET_* environment variables, read once per process."""
    return Settings()


def apply_gdal_env(settings: Settings | None = None) -> None:
    """Bound GDAL's block cache; GDAL otherwise takes 5% of RAM. No directory listing on open.

    Process-wide GDAL settings through rasterio (`set_gdal_config`: seen by every thread, unlike
    a `rasterio.Env` block, and effective even after a raster was opened), not environment
    variables that child processes would inherit. A GDAL environment variable the user set wins."""
    from rasterio.env import set_gdal_config

    s = settings or get_settings()
    if "GDAL_CACHEMAX" not in os.environ:
        # rasterio sets GDAL_CACHEMAX with GDALSetCacheMax64: a number of bytes.
        set_gdal_config("GDAL_CACHEMAX", s.gdal_cache_mb * 1024 * 1024)
    if "GDAL_DISABLE_READDIR_ON_OPEN" not in os.environ:
        set_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    if "GTIFF_IMPLICIT_JPEG_OVR" not in os.environ:
        # GDAL's own default, which rasterio turns off: a JPEG-in-TIFF orthomosaic without
        # overviews is read at 1/2, 1/4 or 1/8 by libjpeg's scaled decoding (vision/scene.py).
        set_gdal_config("GTIFF_IMPLICIT_JPEG_OVR", True)
