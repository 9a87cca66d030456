"""The edge runner mosaics a flight folder when asked (`--mosaic`), and only then."""

from __future__ import annotations

import json
from pathlib import Path

import rasterio
from khet.edge.journal import Journal
from khet.edge.runner import discover

from khet.cli import main
from tests.flights import SENECA_8, seneca_frames
from tests.vision.rasters import field_rgb, write_geotiff


def _card(shared_data: Path, tmp_path: Path) -> Path:
    """A card with a flight's frames in one folder and an orthomosaic in another."""
    card = tmp_path / "card"
    seneca_frames(shared_data, card / "DCIM" / "flight1", SENECA_8)
    (card / "ortho").mkdir()
    write_geotiff(card / "ortho" / "ortho_a.tif", field_rgb(256, 320, seed=1))
    return card


def test_discover_takes_a_folder_of_frames_as_one_flight_only_when_asked(shared_data, tmp_path):
    card = _card(shared_data, tmp_path)
    plain = discover([card])
    assert len(plain) == 9  # each frame alone, and the orthomosaic
    flights = discover([card], flights=True)
    assert sorted(c.wanted for c in flights.values()) == ["DCIM__flight1", "ortho__ortho_a"]
    flight = next(c for c in flights.values() if c.wanted == "DCIM__flight1")
    assert len(flight.files) == 8
    # A folder given directly that is itself a flight is named after the folder.
    only = discover([card / "DCIM" / "flight1"], flights=True)
    assert [c.wanted for c in only.values()] == ["flight1"]


def test_edge_run_mosaic_maps_the_flight(shared_data, tmp_path, edge_env, capsys):
    card = _card(shared_data, tmp_path)
    out = tmp_path / "out"
    rc = main(["edge", "run", str(card), "-o", str(out), "--mosaic", "--with-imagery"])
    assert rc == 0, capsys.readouterr()
    summary = json.loads((out / "DCIM__flight1" / "summary.json").read_text())
    assert summary["mosaic"]["frames"] == 8 and summary["area_unit"] == "ha"
    with rasterio.open(out / "DCIM__flight1" / "ortho.tif") as ds:
        assert ds.crs.to_epsg() == 32617
    assert (out / "ortho__ortho_a" / "summary.json").is_file()
    with Journal(out) as j:
        entry = next(p for p in j.pending() if p["capture"] == "DCIM__flight1")
    imagery = [f["path"] for f in entry["files"] if f["role"] == "imagery"]
    assert [Path(p).name for p in imagery] == ["ortho.tif"]  # the mosaic, not 8 frames
