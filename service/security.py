"""Passwords, API tokens and the signed session cookie.

- Passwords: argon2 through pwdlib.
- API tokens (devices, scripts): 32 random bytes shown once; only their SHA-256 is stored (a
  high-entropy token needs no slow hash).
- Session cookie (web pages): `<user id>.<expiry>.<hmac>` signed with KHET_SECRET_KEY (or a key
  made once and kept in the data folder). HttpOnly, SameSite=Lax.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

from pwdlib import PasswordHash

from khet.settings import Settings, get_settings

TOKEN_PREFIX = "khet_"
SESSION_COOKIE = "khet_session"


@lru_cache
def _hasher():
    return PasswordHash.recommended()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        _hasher().hash(password)  # same time whether or not the user exists
        return False
    try:
        return _hasher().verify(password, hashed)
    except Exception:  # a damaged hash is a failed login, not a crash
        return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def secret_key(settings: Settings | None = None) -> bytes:
    settings = settings or get_settings()
    if settings.secret_key:
        return settings.secret_key.encode()
    return _stored_key(Path(settings.data_dir).resolve())


@lru_cache
def _stored_key(data_dir: Path) -> bytes:
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # first writer wins; never overwrite a key in use
        except FileExistsError:
            pass
        tmp.unlink()
    return path.read_text().strip().encode()


def sign_session(user_id: int, days: int, settings: Settings | None = None) -> str:
    expires = int(time.time()) + days * 86400
    payload = f"{user_id}.{expires}"
    sig = hmac.new(secret_key(settings), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{sig}"


def read_session(cookie: str, settings: Settings | None = None) -> int | None:
    """The user id in a valid, unexpired cookie; None for anything else."""
    try:
        uid, expires, sig = cookie.split(".")
        payload = f"{uid}.{expires}"
        good = hmac.new(secret_key(settings), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, sig) or int(expires) < time.time():
            return None
        return int(uid)
    except (ValueError, UnicodeError):
        return None
