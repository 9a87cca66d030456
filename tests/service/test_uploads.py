"""The chunk protocol, the multipart upload, and every way an upload can be refused."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from tests.service.rasters import make_geotiff


def _declare(api, who, data: bytes, name: str = "field.tif"):
    return api.client.post(
        "/api/v1/uploads",
        headers=who["headers"],
        json={"filename": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    )


def _put(api, who, uid, data: bytes, start: int, end: int, total: int | None = None):
    return api.client.put(
        f"/api/v1/uploads/{uid}",
        content=data[start : end + 1],
        headers={**who["headers"], "Content-Range": f"bytes {start}-{end}/{total or len(data)}"},
    )


def _stored(tmp_path: Path) -> list[Path]:
    root = tmp_path / "khet-data"
    return [p for p in root.rglob("*") if p.is_file() and "farms" in p.parts]


def test_chunk_protocol_resume_and_idempotency(api, geotiff):
    alice = api.user()
    data = geotiff.read_bytes()
    r = _declare(api, alice, data)
    assert r.status_code == 201
    up = r.json()
    assert up["offset"] == 0 and up["complete"] is False and up["size"] == len(data)
    uid = up["id"]
    r = _put(api, alice, uid, data, 0, 999)
    assert r.status_code == 200 and r.json() == {"offset": 1000, "complete": False}
    # the same chunk again (its reply was lost): nothing appended twice
    r = _put(api, alice, uid, data, 0, 999)
    assert r.status_code == 200 and r.json()["offset"] == 1000
    # a gap: 409 with the offset to resume from
    r = _put(api, alice, uid, data, 2000, 2999)
    assert r.status_code == 409
    assert r.json()["error"] == "conflict" and r.json()["offset"] == 1000
    # the client lost its state: declaring the same file again resumes
    r = _declare(api, alice, data)
    assert r.status_code == 200 and r.json()["id"] == uid and r.json()["offset"] == 1000
    # a body shorter than its Content-Range is refused and not kept
    r = api.client.put(
        f"/api/v1/uploads/{uid}",
        content=data[1000:1500],
        headers={**alice["headers"], "Content-Range": f"bytes 1000-1999/{len(data)}"},
    )
    assert r.status_code == 400
    assert (
        api.client.get(f"/api/v1/uploads/{uid}", headers=alice["headers"]).json()["offset"] == 1000
    )
    r = _put(api, alice, uid, data, 1000, len(data) - 1)
    assert r.status_code == 200 and r.json() == {"offset": len(data), "complete": True}
    r = api.client.get(f"/api/v1/uploads/{uid}", headers=alice["headers"])
    assert r.json() == {
        "id": uid,
        "offset": len(data),
        "size": len(data),
        "complete": True,
        "filename": "field.tif",
    }
    r = _put(api, alice, uid, data, 0, 99)  # anything after completion: harmless
    assert r.status_code == 200 and r.json()["complete"] is True
    # another user uploading the same bytes gets their own upload
    bob = api.user()
    assert _declare(api, bob, data).json()["id"] != uid


def test_checksum_mismatch_discards_data(api, geotiff):
    alice = api.user()
    data = geotiff.read_bytes()
    r = api.client.post(
        "/api/v1/uploads",
        headers=alice["headers"],
        json={"filename": "f.tif", "size": len(data), "sha256": "0" * 64},
    )
    uid = r.json()["id"]
    r = _put(api, alice, uid, data, 0, len(data) - 1)
    assert r.status_code == 422 and r.json()["error"] == "bad_input"
    assert "SHA-256" in r.json()["detail"]
    r = api.client.get(f"/api/v1/uploads/{uid}", headers=alice["headers"])
    assert r.json()["offset"] == 0 and r.json()["complete"] is False


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "a/b.tif", "..", ".hidden.tif", "a\\b.tif", "x\x00.tif", "", "con:tif"],
)
def test_unsafe_file_names_refused(api, name):
    alice = api.user()
    r = api.client.post(
        "/api/v1/uploads",
        headers=alice["headers"],
        json={"filename": name, "size": 10, "sha256": "a" * 64},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] in ("bad_input", "invalid")


def test_file_names_with_inner_dots_are_taken_and_long_ones_said_so(api):
    alice = api.user()
    for name in ("field..tif", "IMG_0001..v2.tif"):  # no separator: they go nowhere
        r = api.client.post(
            "/api/v1/uploads",
            headers=alice["headers"],
            json={"filename": name, "size": 10, "sha256": "a" * 64},
        )
        assert r.status_code == 201 and r.json()["filename"] == name, r.text
    r = api.client.post(
        "/api/v1/uploads",
        headers=alice["headers"],
        json={"filename": "ä" * 120 + ".tif", "size": 10, "sha256": "b" * 64},
    )
    assert r.status_code == 422 and "too long (244 bytes; at most 200)" in r.json()["detail"]


def test_upload_limits_and_bad_ranges(api, monkeypatch, geotiff):
    from khet.settings import get_settings

    alice = api.user()
    monkeypatch.setenv("KHET_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    r = api.client.post(
        "/api/v1/uploads",
        headers=alice["headers"],
        json={"filename": "huge.tif", "size": 2 * 1024 * 1024, "sha256": "a" * 64},
    )
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    data = geotiff.read_bytes()
    uid = _declare(api, alice, data).json()["id"]
    for header in (
        "bytes=0-9",
        "bytes 0-9/1",
        f"bytes 9-0/{len(data)}",
        "items 0-9/10",
        f"bytes 0-{len(data)}/{len(data)}",
    ):
        r = api.client.put(
            f"/api/v1/uploads/{uid}",
            content=b"x" * 10,
            headers={**alice["headers"], "Content-Range": header},
        )
        assert 400 <= r.status_code < 500, (header, r.status_code)
    r = api.client.put(f"/api/v1/uploads/{uid}", content=b"x", headers=alice["headers"])
    assert r.status_code == 422  # Content-Range missing


def _png_bomb() -> bytes:
    """A valid PNG header declaring 100,000 x 100,000 RGB pixels, with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "case", ["not_image", "truncated", "bomb", "empty", "traversal", "no_files", "json_body"]
)
def test_multipart_refusals_leave_nothing(api, geotiff, tmp_path, case, monkeypatch):
    from khet.settings import get_settings

    monkeypatch.setenv("KHET_MAX_DECODED_MB", "64")
    get_settings.cache_clear()
    alice = api.user()
    _, field = api.farm_field(alice)
    url = f"/api/v1/fields/{field}/flights/upload"
    data = geotiff.read_bytes()
    kwargs: dict = {}
    if case == "not_image":
        kwargs["files"] = [("files", ("field.tif", b"<html>hello</html>" * 10, "image/tiff"))]
    elif case == "truncated":
        kwargs["files"] = [("files", ("field.tif", data[: len(data) // 3], "image/tiff"))]
    elif case == "bomb":
        kwargs["files"] = [("files", ("bomb.png", _png_bomb(), "image/png"))]
    elif case == "empty":
        kwargs["files"] = [("files", ("field.tif", b"", "image/tiff"))]
    elif case == "traversal":
        kwargs["files"] = [("files", ("../../evil.tif", data, "image/tiff"))]
    elif case == "no_files":
        kwargs["data"] = {"bands": "red,green,blue"}
        kwargs["files"] = [("other", ("x.txt", b"hello", "text/plain"))]
    elif case == "json_body":
        kwargs["json"] = {"files": "x"}
    r = api.client.post(url, headers=alice["headers"], **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert set(body) >= {"error", "detail"} and body["detail"]
    flights = api.client.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()
    assert flights == []
    assert _stored(tmp_path) == []
    assert not list((tmp_path / "khet-data" / "uploads").rglob("mp-*"))


def test_multipart_over_limit(api, tmp_path, monkeypatch):
    from khet.settings import get_settings

    alice = api.user()
    _, field = api.farm_field(alice)
    monkeypatch.setenv("KHET_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    blob = b"II*\x00" + b"\0" * (2 * 1024 * 1024)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights/upload",
        headers=alice["headers"],
        files=[("files", ("big.tif", blob, "image/tiff"))],
    )
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert _stored(tmp_path) == []


def test_multipart_flight_and_client_id(api, geotiff, use_test_models):
    alice = api.user()
    _, field = api.farm_field(alice)
    url = f"/api/v1/fields/{field}/flights/upload"
    files = [("files", ("field.tif", geotiff.read_bytes(), "image/tiff"))]
    r = api.client.post(
        url,
        headers=alice["headers"],
        files=files,
        data={"client_id": "drone-7/2026-06-12", "captured_at": "2026-06-12"},
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["status"] == "queued" and first["inputs"] == ["field.tif"]
    assert first["captured_at"].startswith("2026-06-12")
    r = api.client.post(
        url, headers=alice["headers"], files=files, data={"client_id": "drone-7/2026-06-12"}
    )
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    # The same client_id with another image is not that flight: refused, nothing stored.
    before = sorted(_stored(geotiff.parent.parent))
    other = make_geotiff(geotiff.parent / "other.tif", bands=("red", "green", "blue"), seed=5)
    r = api.client.post(
        url,
        headers=alice["headers"],
        files=[("files", ("field.tif", other.read_bytes(), "image/tiff"))],
        data={"client_id": "drone-7/2026-06-12"},
    )
    assert r.status_code == 409 and r.json()["error"] == "conflict", r.text
    assert f"flight {first['id']}" in r.json()["detail"] and "new client_id" in r.json()["detail"]
    assert sorted(_stored(geotiff.parent.parent)) == before
    flights = api.client.get(f"/api/v1/fields/{field}/flights", headers=alice["headers"]).json()
    assert [f["id"] for f in flights] == [first["id"]]


def test_client_id_replay_or_conflict(api, tmp_path):
    """A client_id names one request: sent again with the same uploads, bands and GSD (in any
    order) it gets its flight back; with another upload, another GSD or other bands it is a 409
    that says which flight holds it, never that flight passed off as the new one's."""
    alice = api.user()
    _, field = api.farm_field(alice)
    url = f"/api/v1/fields/{field}/flights"
    # The band files of one capture (one band per file).
    red = make_geotiff(tmp_path / "cap" / "IMG_0001_1.tif", bands=("red",))
    nir = make_geotiff(tmp_path / "cap" / "IMG_0001_2.tif", bands=("nir",))
    a, b = api.upload(alice, red), api.upload(alice, nir)
    body = {"uploads": [a, b], "client_id": "web-1", "bands": ["red", "nir"], "gsd": 0.05}
    r = api.client.post(url, headers=alice["headers"], json=body)
    assert r.status_code == 201, r.text
    first = r.json()["id"]
    again = {**body, "uploads": [b, a]}
    r = api.client.post(url, headers=alice["headers"], json=again)
    assert r.status_code == 200 and r.json()["id"] == first
    for change in ({"uploads": [a]}, {"gsd": 0.03}, {"bands": ["nir", "red"]}):
        r = api.client.post(url, headers=alice["headers"], json={**body, **change})
        assert r.status_code == 409, (change, r.text)
        assert f"flight {first}" in r.json()["detail"]
    flights = api.client.get(url, headers=alice["headers"]).json()
    assert [f["id"] for f in flights] == [first]
    # Another field may use the same key: it names that field's flight.
    _, field2 = api.farm_field(alice)
    r = api.client.post(f"/api/v1/fields/{field2}/flights", headers=alice["headers"], json=body)
    assert r.status_code == 201 and r.json()["id"] != first


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gsd", "0"),
        ("gsd", "1e-6"),
        ("gsd", "three cm"),
        ("captured_at", "2099-01-01"),
        ("captured_at", "last Tuesday"),
        ("bands", "red,gr een"),
        ("client_id", "x" * 201),
    ],
)
def test_multipart_fields_are_checked_as_the_json_routes(api, geotiff, tmp_path, field, value):
    """One schema for a flight's fields: the form and the JSON body refuse the same values with
    the same words, and the form stores nothing then."""
    alice = api.user()
    _, fid = api.farm_field(alice)
    json_value: object = value.split(",") if field == "bands" else value
    if field == "gsd" and value != "three cm":
        json_value = float(value)
    up = api.upload(alice, geotiff)
    as_json = api.client.post(
        f"/api/v1/fields/{fid}/flights",
        json={"uploads": [up], field: json_value},
        headers=alice["headers"],
    )
    as_form = api.client.post(
        f"/api/v1/fields/{fid}/flights/upload",
        headers=alice["headers"],
        files=[("files", ("field.tif", geotiff.read_bytes(), "image/tiff"))],
        data={field: value},
    )
    assert as_json.status_code == as_form.status_code == 422, (as_json.text, as_form.text)
    assert as_form.json()["detail"] == as_json.json()["detail"]
    assert as_form.json()["detail"].startswith(field), as_form.json()["detail"]
    flights = api.client.get(f"/api/v1/fields/{fid}/flights", headers=alice["headers"]).json()
    assert flights == []
    assert not list((tmp_path / "khet-data" / "uploads").rglob("mp-*"))


def test_multipart_flight_states_its_gsd(api, geotiff):
    alice = api.user()
    _, fid = api.farm_field(alice)
    r = api.client.post(
        f"/api/v1/fields/{fid}/flights/upload",
        headers=alice["headers"],
        files=[("files", ("field.tif", geotiff.read_bytes(), "image/tiff"))],
        data={"gsd": " 0.05 ", "bands": "red, green ,blue", "captured_at": ""},
    )
    assert r.status_code == 201, r.text
    assert r.json()["gsd"] == 0.05 and r.json()["bands"] == ["red", "green", "blue"]
    assert r.json()["captured_at"] is None


def test_flight_from_incomplete_or_foreign_upload(api, geotiff):
    alice, bob = api.user(), api.user()
    _, field = api.farm_field(alice)
    data = geotiff.read_bytes()
    uid = _declare(api, alice, data).json()["id"]
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": [uid]}, headers=alice["headers"]
    )
    assert r.status_code == 409
    bob_up = api.upload(bob, geotiff)
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": [bob_up]}, headers=alice["headers"]
    )
    assert r.status_code == 404
    r = api.client.post(
        f"/api/v1/fields/{field}/flights", json={"uploads": []}, headers=alice["headers"]
    )
    assert r.status_code == 422
