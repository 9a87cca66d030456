"""Passwords, API tokens and web sessions.

- Passwords: argon2 through pwdlib, with a basic strength check when one is set.
- API tokens (devices, scripts): 32 random bytes shown once; only their SHA-256 is stored (a
  high-entropy token needs no slow hash). They expire (KHET_TOKEN_DAYS) and can be revoked.
- Web sessions: the cookie holds another random token, its SHA-256 is a row in `sessions`.
  Nothing is signed, so there is no key to keep, and no cookie outlives a logout, a password
  change or a disabled account. A cookie that matches no row (forged, mangled, non-ASCII) is
  simply no session. HttpOnly, SameSite=Lax, Secure over HTTPS.
"""

from __future__ import annotations

import hashlib
import secrets
from functools import lru_cache

from pwdlib import PasswordHash

from khet.errors import InputError

TOKEN_PREFIX = "khet_"
SESSION_COOKIE = "khet_session"
MIN_PASSWORD = 8
# The most common passwords of leaked lists that are 8 characters or longer; a strength meter
# would be a dependency for little more than this.
COMMON_PASSWORDS = frozenset(
    """password password1 password12 password123 passw0rd p@ssword p@ssw0rd 12345678 123456789
    1234567890 0123456789 87654321 11111111 00000000 88888888 12341234 11223344 123123123
    qwertyuiop qwerty123 qwerty12 1q2w3e4r 1q2w3e4r5t qazwsxedc zaq12wsx asdfghjkl asdfasdf
    iloveyou princess sunshine football baseball superman welcome1 welcome123 letmein1
    trustno1 starwars whatever computer internet abc12345 abcd1234 changeme changeme1
    administrator admin123 admin1234 pakistan pakistan1 pakistan123 lahore123 karachi123
    farmer123 khet1234 khetkhet""".split()
)


@lru_cache
def _hasher():
    return PasswordHash.recommended()


def hash_password(password: str) -> str:
    """A password's hash for storage (Argon2)."""
    return _hasher().hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Whether a password matches its stored hash; as slow when there is no hash."""
    if not hashed:
        _hasher().hash(password)  # same time whether or not the user exists
        return False
    try:
        return _hasher().verify(password, hashed)
    except Exception:  # a damaged hash is a failed login, not a crash
        return False


def check_password_strength(password: str, email: str = "") -> None:
    """Refuse passwords that the first guesses of an attacker would find."""
    stripped = password.strip()
    if len(password) < MIN_PASSWORD:
        raise InputError(f"The password must have at least {MIN_PASSWORD} characters.")
    if len(set(stripped)) < 4:
        raise InputError("The password is too simple: use more different characters.")
    lowered = stripped.lower()
    local = email.split("@")[0].lower()
    if lowered in COMMON_PASSWORDS or lowered.rstrip("0123456789!") in COMMON_PASSWORDS:
        raise InputError("That password is one of the most common ones; choose another.")
    if local and len(local) >= 4 and local in lowered and len(lowered) - len(local) < 4:
        raise InputError("The password is too close to the email address; choose another.")


def new_token() -> str:
    """A new random API token, with Khet's prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    """A new random session cookie value."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The SHA-256 of a token as hex: what the database stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
