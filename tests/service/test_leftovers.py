"""What a crash leaves behind is cleaned up when a worker starts, and unfinished copies retried.

Before: `.imagery.tif.part*` files (547 MB seen) and `.new-*` staging folders stayed forever,
the imagery web copy of a flight whose worker died was never made, and a deleted flight's
running job recreated its folder.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.service.conftest import drain_queue


def _age(path, hours: float = 2) -> None:
    t = time.time() - hours * 3600
    os.utime(path, (t, t))


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_worker_start_cleans_up_and_retries_copies(api, geotiff, use_test_models):
    from khet.service import storage
    from khet.service.jobs import clean_up

    c = api.client
    alice = api.user()
    farm, field = api.farm_field(alice)
    fl = api.flight(alice, field, geotiff, run=True)["id"]
    drain_queue()  # the job's own message (the job already ran)
    root = storage.data_dir()
    fdir = storage.flight_dir(farm, field, fl)
    web = fdir / "results" / "web"
    # The worker died while making the imagery copy, and earlier crashes left debris.
    (web / "imagery.tif").unlink()
    debris = [
        web / ".imagery.tif.part",
        web / ".imagery.tif.part.ovr.tmp",
        fdir.parent / ".new-99-123" / "input" / "x.tif",
        fdir.parent / f".trash-{fl}-1-2" / "results" / "x.tif",
        fdir / ".work-7-123" / "classes.tif",
        root / "work" / "123-deadbeef" / "classes.tif",
        root / "staging" / "0123abcd" / "input" / "x.tif",
        root / "uploads" / str(alice["id"]) / "mp-0123" / "x.tif",
        root / "farms" / str(farm) / "fields" / str(field) / "flights" / "999" / "results" / "a",
    ]
    for d in debris:
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_bytes(b"x" * 1024)
    for d in (root / "staging" / "0123abcd", root / "uploads" / str(alice["id"]) / "mp-0123"):
        _age(d)
    fresh = root / "staging" / "fresh"  # a request assembling a flight right now
    fresh.mkdir()
    clean_up()
    left = [str(d.relative_to(root)) for d in debris if d.exists()]
    assert left == [], left
    assert fresh.is_dir()
    assert not (fdir.parent / "999").exists()  # the folder of a flight that does not exist
    assert drain_queue() == 1  # the imagery copy, queued again
    assert (web / "imagery.tif").is_file()
    clean_up()
    assert drain_queue() == 0  # nothing left to redo
    body = c.get(f"/api/v1/flights/{fl}", headers=alice["headers"]).json()
    assert body["status"] == "done" and "classes.tif" in body["results"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_interrupted_swap_keeps_the_old_results(api, geotiff, use_test_models):
    """A crash between the two renames of a re-run leaves the results in `.old-results-*`:
    they are put back, not deleted."""
    from khet.service import storage
    from khet.service.jobs import clean_up

    alice = api.user()
    farm, field = api.farm_field(alice)
    fl = api.flight(alice, field, geotiff, run=True)["id"]
    drain_queue()
    fdir = storage.flight_dir(farm, field, fl)
    os.replace(fdir / "results", fdir / ".old-results-3")
    clean_up()
    assert (fdir / "results" / "classes.tif").is_file()
    assert not list(fdir.glob(".old-results-*"))
