"""A whole flight in one upload: the job mosaics it (saying which frame it is placing), the
mosaic becomes the flight's imagery, and the map is in hectares. A flight that cannot be
mosaicked is refused before any job runs.

SQLite only: the mosaic takes seconds, and the database plays no part in it (the other service
tests run every API path on PostgreSQL too).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import morecantile
import numpy as np
import pytest
from PIL import Image

from tests.flights import SENECA_8, seneca_images
from tests.service.conftest import Api, run_queued_jobs


@pytest.fixture
def api(sqlite_only, use_test_models) -> Iterator[Api]:
    from fastapi.testclient import TestClient
    from khet.service.main import create_app

    with TestClient(create_app()) as client:
        yield Api(client)


def _stages_while(run) -> list[str]:
    """The job stages the database showed while `run()` ran (as a polling page sees them)."""
    from khet.service.db import Job, session_scope
    from sqlalchemy import select

    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            with session_scope() as db:
                for stage in db.scalars(select(Job.stage)):
                    if stage and (not seen or seen[-1] != stage):
                        seen.append(stage)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        run()
    finally:
        done.set()
        t.join()
    return seen


def test_a_flight_uploaded_whole_is_mosaicked_and_mapped(api, shared_data):
    alice = api.user()
    _, field = api.farm_field(alice)
    ups = [api.upload(alice, seneca_images(shared_data) / f"{n}.jpg") for n in SENECA_8]
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": ups}, headers=alice["headers"]
    )
    assert r.status_code == 201, r.text
    fl = r.json()["id"]
    stages = _stages_while(run_queued_jobs)
    assert any(s.startswith("placing frame ") and s.endswith(" of 8") for s in stages), stages
    f = api.client.get(f"/api/v1/flights/{fl}", headers=alice["headers"]).json()
    assert f["status"] == "done", f["error"]
    assert f["job"]["stage"] is None and f["job"]["progress"] == 1.0
    assert "ortho.tif" in f["results"]
    ortho = api.client.get(f"/api/v1/flights/{fl}/results/ortho.tif", headers=alice["headers"])
    assert ortho.status_code == 200 and ortho.content[:4] in (b"II*\x00", b"II+\x00")
    assert f["summary"]["area_unit"] == "ha"
    assert f["summary"]["mosaic"]["placed_by_sfm"] >= 7
    # The mosaic is the flight's imagery: tiles of it at the flight's centre.
    tj = api.client.get(
        f"/api/v1/flights/{fl}/tilejson.json?layer=imagery", headers=alice["headers"]
    )
    assert tj.status_code == 200, tj.text
    lon, lat, _ = tj.json()["center"]
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 19)
    tile = api.client.get(
        f"/api/v1/flights/{fl}/tiles/imagery/19/{t.x}/{t.y}", headers=alice["headers"]
    )
    assert tile.status_code == 200, tile.text
    img = np.asarray(Image.open(io.BytesIO(tile.content)).convert("RGB"))
    assert img.std() > 5  # fields and roads, not an empty tile


def test_a_flight_without_gps_is_refused_before_any_job(api, shared_data, tmp_path):
    alice = api.user()
    _, field = api.farm_field(alice)
    ups = []
    for n in SENECA_8[:3]:
        with Image.open(seneca_images(shared_data) / f"{n}.jpg") as im:
            exif = im.getexif()
            del exif[0x8825]
            im.save(tmp_path / f"{n}.jpg", exif=exif, quality=90)
        ups.append(api.upload(alice, tmp_path / f"{n}.jpg"))
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": ups}, headers=alice["headers"]
    )
    assert r.status_code == 422, r.text
    assert "GPS" in r.json()["detail"]
    flights = api.client.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()
    assert flights == []
