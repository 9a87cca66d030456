"""Logging in and out, tokens, and refusing the anonymous."""

from __future__ import annotations


def test_session_cookie_login_logout(api):
    c = api.client
    alice = api.user(password="a long password")
    assert c.get("/api/v1/me").status_code == 401
    r = c.post("/api/v1/session", json={"email": alice["email"], "password": "wrong one"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = c.post(
        "/api/v1/session", json={"email": alice["email"].upper(), "password": "a long password"}
    )
    assert r.status_code == 200, r.text
    assert "khet_session" in r.cookies
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert c.get("/api/v1/me").json()["email"] == alice["email"]
    assert c.delete("/api/v1/session").status_code == 204
    c.cookies.clear()
    assert c.get("/api/v1/me").status_code == 401


def test_forged_cookie_and_bad_tokens(api):
    c = api.client
    alice = api.user()
    c.cookies.set("khet_session", f"{alice['id']}.9999999999.deadbeef")
    assert c.get("/api/v1/me").status_code == 401
    c.cookies.clear()
    for header in ("Bearer nope", "Basic abc", "Bearer ", "token"):
        r = c.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json()["error"] == "unauthorized"


def test_openapi_documents_how_to_authenticate(api):
    """The OpenAPI document names both ways in (so generated clients and /api/docs offer them),
    on the routes that need them and not on those that do not."""
    doc = api.client.get("/api/v1/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["token"]["description"],
    }
    assert schemes["session"]["type"] == "apiKey" and schemes["session"]["in"] == "cookie"
    assert schemes["session"]["name"] == "khet_session"
    both = [{"token": []}, {"session": []}]
    assert doc["paths"]["/api/v1/me"]["get"]["security"] == both
    assert doc["paths"]["/api/v1/farms"]["post"]["security"] == both
    tile = "/api/v1/flights/{flight_id}/tiles/{layer}/{z}/{x}/{y}"
    assert doc["paths"][tile]["get"]["security"] == both  # finds its user in a worker thread
    assert doc["paths"][tile + ".png"]["get"]["security"] == both
    assert "security" not in doc["paths"]["/api/v1/session"]["post"]  # logging in
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_tokens_for_devices(api):
    c = api.client
    alice = api.user()
    r = c.post("/api/v1/tokens", json={"name": "drone-7"}, headers=alice["headers"])
    assert r.status_code == 201
    token = r.json()["token"]
    assert (
        c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["id"]
        == alice["id"]
    )
    from khet.service.db import ApiToken, session_scope
    from sqlalchemy import select

    with session_scope() as db:
        stored = list(db.scalars(select(ApiToken.token_hash)))
    assert token not in stored  # only the digest is kept


def test_health_and_readiness(api, use_test_models):
    from khet.service.jobs import beat

    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")  # no worker: jobs would wait forever
    assert r.status_code == 503 and r.json()["checks"]["worker"] != "ok", r.text
    beat("test-worker")  # what a live worker records every few seconds
    r = api.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "queue": "ok", "worker": "ok", "models": "ok"}


def test_readiness_without_models(api, monkeypatch, tmp_path):
    from khet.settings import get_settings

    monkeypatch.setenv("KHET_MODELS_DIR", str(tmp_path / "none"))
    get_settings.cache_clear()
    monkeypatch.setattr("khet.vision.bundle.list_bundles", lambda *a, **k: [])
    r = api.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["models"] != "ok"


def test_error_answers_carry_their_headers(api):
    """A 401 names the scheme that works (WWW-Authenticate), a 405 the methods that do (Allow):
    the JSON error handlers keep the headers the exception carries."""
    c = api.client
    r = c.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = c.get("/api/v1/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = c.put("/api/v1/me", json={})
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert "GET" in r.headers["allow"]


def test_status_codes_are_the_service_table():
    """Domain errors carry no HTTP status; the service's table maps them, nearest class first."""
    from khet.service.errors import DEFAULT_STATUS_CODES, headers_for, status_for
    from khet.service.ratelimit import TooManyAttempts

    from khet.errors import AuthError, BandError, InputError, KhetError, OutputError

    assert not hasattr(KhetError("x"), "status_code")
    assert status_for(BandError("no red band")) == DEFAULT_STATUS_CODES[InputError] == 422
    assert status_for(OutputError("disk full")) == 507
    assert status_for(KhetError("x")) == 400
    limited = TooManyAttempts("wait", retry_after=30)
    assert status_for(limited) == 429
    assert headers_for(limited, 429) == {"Retry-After": "30"}
    assert "WWW-Authenticate" in headers_for(AuthError("who?"), 401)
