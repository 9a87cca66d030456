"""Sync against an in-test fake of the service, for faults the real one cannot be made to show.

The real service process is exercised in test_real_service.py; here the fake lets each test count
exactly which bytes were appended and cut the network at chosen points in both directions.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest
from khet.edge.journal import Journal
from khet.edge.outbox import sync

from khet.cli import main
from khet.errors import AuthError, KhetError
from tests.edge.fakeservice import CutProxy, FakeService
from tests.vision.rasters import field_rgb, write_geotiff


@pytest.fixture
def fake():
    s = FakeService()
    yield s
    s.close()


@pytest.fixture
def outbox(tmp_path, use_test_models):
    """An edge output folder with two analyzed captures waiting in the outbox (field 7)."""
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "north.tif", field_rgb(256, 320, seed=3))
    write_geotiff(src / "south.tif", field_rgb(192, 256, seed=4))
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out), "--field", "7", "--with-imagery"]) == 0
    return out


def _total(out) -> int:
    with Journal(out) as j:
        return sum(f["size"] for p in j.pending() for f in p["files"])


def _check(fake: FakeService, out) -> None:
    """Exactly one flight per capture, every file intact, no byte appended twice."""
    with Journal(out) as j:
        items = j.outbox_items()
        assert [i["state"] for i in items] == ["synced", "synced"]
    by_id = {i["client_id"]: i["capture"] for i in items}  # the captures' identities
    assert len(fake.flights) == 2
    for (field, client_id), flight in fake.flights.items():
        assert field == "7"
        summary = fake.uploads[flight["results"]["summary.json"]]["data"]
        local = (out / by_id[client_id] / "summary.json").read_bytes()
        assert hashlib.sha256(summary).hexdigest() == hashlib.sha256(local).hexdigest()
        assert len(flight["uploads"]) == 1  # the imagery
        for uid in [*flight["uploads"], *flight["results"].values()]:
            assert fake.complete(fake.uploads[uid])
    assert fake.appended == sum(u["size"] for u in fake.uploads.values())


def test_sync_sends_each_capture_once(outbox, fake, capsys):
    assert (
        main(
            [
                "edge",
                "sync",
                "-o",
                str(outbox),
                "--server",
                fake.url,
                "--token",
                "t0ken",
                "--chunk-kb",
                "32",
            ]
        )
        == 0
    )
    assert "2 flight(s) sent" in capsys.readouterr().out
    _check(fake, outbox)
    assert not list((outbox / ".khet-edge" / "outbox").iterdir())  # space freed after sending
    assert (outbox / "north" / "summary.json").exists()  # the results themselves stay
    n = len(fake.requests)
    assert main(["edge", "sync", "-o", str(outbox), "--server", fake.url, "--token", "t0ken"]) == 0
    assert len(fake.requests) == n  # nothing left to send: not even a request


@pytest.mark.parametrize("fraction", [0.001, 0.4, 0.93, 0.999])
def test_cut_mid_transfer_then_resume(outbox, fake, fraction):
    total = _total(outbox)
    proxy = CutProxy(fake.port, budget=int(total * fraction) + 200)
    with Journal(outbox) as j, pytest.raises(KhetError, match="Cannot reach the server"):
        sync(j, proxy.url, "t0ken", chunk=48 * 1024, timeout=5)
    assert proxy.cut.is_set()
    proxy.close()
    with Journal(outbox) as j:
        report = sync(j, fake.url, "t0ken", chunk=48 * 1024)
    assert len(report.synced) + report.already <= 2
    _check(fake, outbox)


def test_reply_lost_after_flight_created(outbox, fake):
    """The flight POST reached the service but its reply was cut: no second flight on retry."""
    with Journal(outbox) as j:
        sync(j, fake.url, "t0ken")
        for item in j.outbox_items():  # forget that it was sent, as if the reply never came
            j.set_outbox(item["capture"], state="pending")
        n = len(fake.flights)
        again = sync(j, fake.url, "t0ken")
    assert len(fake.flights) == n == 2
    # Said as what it is: nothing new sent, both found on the server (not "2 sent, 2 there").
    assert again.line() == "sync: 0 flight(s) sent, 2 already on the server"


def test_state_lost_resumes_from_service_offset(outbox, fake):
    """Even an upload id lost in a crash is found again (POST answers the existing upload)."""
    proxy = CutProxy(fake.port, budget=_total(outbox) // 2)
    with Journal(outbox) as j:
        with pytest.raises(KhetError):
            sync(j, proxy.url, "t0ken", chunk=32 * 1024, timeout=5)
        for item in j.pending():
            for f in item["files"]:
                j.set_upload(item["capture"], f["path"], None, False)
        sync(j, fake.url, "t0ken", chunk=32 * 1024)
    proxy.close()
    _check(fake, outbox)


def test_bad_token_and_unknown_field(outbox, fake, capsys):
    assert main(["edge", "sync", "-o", str(outbox), "--server", fake.url, "--token", "nope"]) == 2
    assert "refused the token" in capsys.readouterr().err
    with Journal(outbox) as j, pytest.raises(AuthError):
        sync(j, fake.url, "nope")
    fake.fields.discard("7")
    assert main(["edge", "sync", "-o", str(outbox), "--server", fake.url, "--token", "t0ken"]) == 2
    err = capsys.readouterr().err
    assert err.count("khet: ") == 2 and "no such field" in err
    with Journal(outbox) as j:
        assert len(j.pending()) == 2  # still waiting, to be sent when the field exists


def test_field_from_sync_when_not_given_at_run(tmp_path, use_test_models, fake):
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "east.tif", field_rgb(128, 128))
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out)]) == 0
    assert main(["edge", "sync", "-o", str(out), "--server", fake.url, "--token", "t0ken"]) == 2
    assert (
        main(
            [
                "edge",
                "sync",
                "-o",
                str(out),
                "--server",
                fake.url,
                "--token",
                "t0ken",
                "--field",
                "1",
            ]
        )
        == 0
    )
    assert [k[0] for k in fake.flights] == ["1"]


def test_network_down_is_one_line(outbox, capsys):
    assert (
        main(["edge", "sync", "-o", str(outbox), "--server", "http://127.0.0.1:9", "--token", "t"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results stay in the outbox" in err[0]


def test_watch_syncs_when_the_network_is_there(tmp_path, use_test_models, fake, capsys):
    card = tmp_path / "card"
    card.mkdir()
    write_geotiff(card / "west.tif", field_rgb(128, 128))
    out = tmp_path / "out"
    # No network: the capture is analyzed, the result waits in the outbox, the watcher goes on.
    args = [
        "edge",
        "watch",
        str(card),
        "-o",
        str(out),
        "--once",
        "--settle",
        "0.2",
        "--field",
        "1",
        "--token",
        "t0ken",
    ]
    assert main([*args, "--server", "http://127.0.0.1:9"]) == 0
    assert "sync: Cannot reach the server" in capsys.readouterr().out
    with Journal(out) as j:
        assert [i["state"] for i in j.outbox_items()] == ["pending"]
    # Network back: the next watcher run sends it (and analyzes nothing again).
    assert main([*args, "--server", fake.url]) == 0
    assert "west: sent as flight 1 of field 1" in capsys.readouterr().out
    assert list(fake.flights) == [("1", next(iter(fake.flights.values()))["client_id"])]


def test_a_refused_capture_does_not_block_the_others(outbox, fake, capsys):
    with Journal(outbox) as j:
        first = j.pending()[0]
    fake.reject.add(first["client_id"])
    assert main(["edge", "sync", "-o", str(outbox), "--server", fake.url, "--token", "t0ken"]) == 2
    captured = capsys.readouterr()
    assert "1 flight(s) sent" in captured.out
    assert f"khet: {first['capture']}: The server answered 422" in captured.err
    with Journal(outbox) as j:
        assert [p["capture"] for p in j.pending()] == [first["capture"]]  # kept, with its message
        assert (
            "bad summary" in next(i for i in j.outbox_items() if i["state"] == "pending")["message"]
        )
    fake.reject.clear()  # fixed on the server: the next sync sends it, and only it
    assert main(["edge", "sync", "-o", str(outbox), "--server", fake.url, "--token", "t0ken"]) == 0
    _check(fake, outbox)


def test_a_result_changed_after_analysis_is_analysed_again(outbox, fake, tmp_path, capsys):
    """A result edited after the analysis (same size, other bytes) is not sent: the capture is
    set to be analysed again, the next run does it, and the sync after sends the fresh result.
    A result folder deleted by hand is analysed again by the next run too."""
    with Journal(outbox) as j:
        first, second = (p["capture"] for p in j.pending())
    summary = outbox / first / "summary.json"
    data = bytearray(summary.read_bytes())
    data[data.index(b"soil")] = ord("S")  # one byte changed in place, the size kept
    summary.write_bytes(bytes(data))
    sync_args = ["edge", "sync", "-o", str(outbox), "--server", fake.url, "--token", "t0ken"]
    assert main(sync_args) == 2
    err = capsys.readouterr().err
    assert f"{first}: Its result" in err and "analyses the capture again" in err
    assert len(fake.flights) == 1  # the other capture went; the changed one did not
    with Journal(outbox) as j:
        states = {i["capture"]: i["state"] for i in j.outbox_items()}
        assert states == {first: "stale", second: "synced"}
    card = tmp_path / "card"
    # The device's next run, with its usual options; the field the first run gave is kept.
    assert main(["edge", "run", str(card), "-o", str(outbox), "--with-imagery"]) == 0
    assert "Soil" not in (outbox / first / "summary.json").read_text()  # analysed afresh
    assert main(sync_args) == 0
    _check(fake, outbox)
    # Deleted by hand: the next run analyses it again (it said "skipped (already done)").
    shutil.rmtree(outbox / second)
    assert main(["edge", "run", str(card), "-o", str(outbox)]) == 0
    assert (outbox / second / "summary.json").is_file()


def test_a_mistyped_field_does_not_stick_to_the_results(tmp_path, use_test_models, fake, capsys):
    """A sync's --field that the server refuses (no such field) was recorded before the post and
    sent every later sync there; now the next --field is taken. A field the server accepted
    stays, so a retry still goes to the same flight."""
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "east.tif", field_rgb(128, 128))
    out = tmp_path / "out"
    assert main(["edge", "run", str(src), "-o", str(out)]) == 0
    base = ["edge", "sync", "-o", str(out), "--server", fake.url, "--token", "t0ken"]
    assert main([*base, "--field", "999"]) == 2
    assert "The server has no field 999 (" in capsys.readouterr().err
    assert main([*base, "--field", "1"]) == 0
    assert [k[0] for k in fake.flights] == ["1"]
    with Journal(out) as j:
        assert [i["field"] for i in j.outbox_items()] == ["1"]


def test_sync_options_are_checked_before_any_network(outbox, capsys):
    base = ["edge", "sync", "-o", str(outbox), "--token", "t"]
    for args, msg in [
        (["--server", "notaurl"], "is not a web address"),
        (["--server", "ftp://example.org"], "is not a web address"),
        (["--server", "http://127.0.0.1:9", "--chunk-kb", "-5"], "give 1 or more"),
    ]:
        assert _exit_code(main, [*base, *args]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err


def _exit_code(fn, argv) -> int:
    """The exit code, whether the command returns it or argparse exits with it."""
    try:
        return fn(argv)
    except SystemExit as e:
        return int(e.code or 0)


def test_running_again_with_the_right_field_corrects_unsent_results(
    tmp_path, use_test_models, fake, capsys
):
    """`edge run --field 99` by mistake, noticed before the results were sent: the same command
    with the right field moves them there. Once sent, another --field says it does not move
    them."""
    src = tmp_path / "card"
    src.mkdir()
    write_geotiff(src / "east.tif", field_rgb(128, 128))
    out = tmp_path / "out"
    run = ["edge", "run", str(src), "-o", str(out)]
    assert main([*run, "--field", "99"]) == 0
    capsys.readouterr()
    assert main([*run, "--field", "1"]) == 0
    assert "now go to field 1, not 99" in capsys.readouterr().out
    base = ["edge", "sync", "-o", str(out), "--server", fake.url, "--token", "t0ken"]
    assert main(base) == 0
    assert [k[0] for k in fake.flights] == ["1"]
    assert main([*run, "--field", "5"]) == 0
    said = capsys.readouterr().out
    assert "were sent to field 1 as flight" in said and "does not move them" in said
    with Journal(out) as j:
        assert [(i["field"], i["state"]) for i in j.outbox_items()] == [("1", "synced")]


def test_running_again_with_the_bands_a_warning_asked_for_replaces_the_map(
    tmp_path, use_test_models, fake, shared_data, capsys
):
    """A near-infrared camera's frame analysed as RGB (its plants soil, and a warning asking for
    --bands nir,green,blue), already sent: running again with those bands analyses it again and
    sends the new map as a flight of its own; the log says the earlier one is on the server."""
    import json

    src = tmp_path / "card"
    src.mkdir()
    shutil.copy(shared_data / "seneca_flight" / "images" / "IMG_0471.jpg", src / "f.jpg")
    out = tmp_path / "out"
    run = ["edge", "run", str(src), "-o", str(out), "--field", "1"]
    sync_ = ["edge", "sync", "-o", str(out), "--server", fake.url, "--token", "t0ken"]
    assert main(run) == 0
    first = json.loads((out / "f" / "summary.json").read_text())
    assert [w for w in first["warnings"] if "near-infrared" in w]
    assert "note: " in capsys.readouterr().out  # said in the log, not only in summary.json
    assert main(sync_) == 0
    capsys.readouterr()
    assert main([*run, "--bands", "nir,green,blue"]) == 0
    said = capsys.readouterr().out
    assert "f: done before with other options (bands None -> ['nir', 'green', 'blue'])" in said
    assert "the earlier result stays on the server as flight" in said
    second = json.loads((out / "f" / "summary.json").read_text())
    veg = next(c["share"] for c in second["classes"] if c["name"] == "vegetation")
    assert veg > 0.15 and not [w for w in second["warnings"] if "near-infrared" in w]
    assert main(sync_) == 0
    assert len(fake.flights) == 2  # the new map is a flight of its own, in the same field
    assert {k[0] for k in fake.flights} == {"1"}
    # The same options again: nothing to do.
    assert main([*run, "--bands", "nir,green,blue"]) == 0
    assert "skipped (already done)" in capsys.readouterr().out


def test_bands_named_in_the_wrong_order_are_noted_in_the_log(
    tmp_path, use_test_models, shared_data, capsys
):
    """The same frame run with --bands red,green,nir (its near-infrared is first): the log says
    the bands are probably in the wrong order, as the summary does."""
    import json

    src = tmp_path / "card"
    src.mkdir()
    shutil.copy(shared_data / "seneca_flight" / "images" / "IMG_0471.jpg", src / "f.jpg")
    out = tmp_path / "out"
    run = ["edge", "run", str(src), "-o", str(out), "--field", "1", "--bands", "red,green,nir"]
    assert main(run) == 0
    said = capsys.readouterr().out
    assert "note: " in said and "wrong order (read as red,green,nir)" in said
    s = json.loads((out / "f" / "summary.json").read_text())
    assert s["input"]["looks_misordered"] > 0.1
