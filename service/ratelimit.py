"""Failed logins, counted per account and per client address, in the database.

The database rather than process memory: `khet serve` runs several web processes (and may run
on several machines), and each would otherwise count only its share of an attacker's guesses.
A failure is one short insert; a check is one count over an indexed column. An account that
reached its limit is answered 429 for the rest of the window, right password or not, and
before the (deliberately slow) password hash runs.
"""

from __future__ import annotations

import math
from datetime import timedelta

from fastapi import Request
from khet.service.config import service_settings
from khet.service.db import LoginFailure, now, sessionmaker_for
from sqlalchemy import delete, func, select

from khet.errors import KhetError


class TooManyAttempts(KhetError):
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}
        self.extra = {"retry_after": retry_after}


def client_address(request: Request) -> str:
    """The client's network address as the server sees it."""
    return (request.client.host if request.client else "") or "unknown"


def _keys(email: str, address: str) -> list[tuple[str, int, str]]:
    svc = service_settings()
    return [
        (f"account:{email[:250]}", svc.login_failures_per_account, "this account"),
        (f"address:{address[:250]}", svc.login_failures_per_address, "your network address"),
    ]


def check_login_allowed(email: str, address: str) -> None:
    """Raise TooManyAttempts when the account or the address used up its failures."""
    window = timedelta(minutes=service_settings().login_window_minutes)
    since = now() - window
    with sessionmaker_for()() as s:
        for key, limit, what in _keys(email, address):
            count, oldest = s.execute(
                select(func.count(), func.min(LoginFailure.at))
                .where(LoginFailure.key == key)
                .where(LoginFailure.at >= since)
            ).one()
            if count >= limit:
                if oldest.tzinfo is None:
                    oldest = oldest.replace(tzinfo=now().tzinfo)
                wait = max(1, math.ceil((oldest + window - now()).total_seconds()))
                minutes = max(1, math.ceil(wait / 60))
                raise TooManyAttempts(
                    f"Too many failed logins for {what}; wait {minutes} minute"
                    f"{'s' if minutes != 1 else ''} and try again, or ask an administrator.",
                    wait,
                )


def record_login_failure(email: str, address: str) -> None:
    """Count one failed login against the account and the address."""
    window = timedelta(minutes=service_settings().login_window_minutes)
    with sessionmaker_for()() as s:
        s.execute(delete(LoginFailure).where(LoginFailure.at < now() - window))
        for key, _, _ in _keys(email, address):
            s.add(LoginFailure(key=key))
        s.commit()


def clear_account_failures(email: str) -> None:
    """A successful login forgets the account's failures (not the address's)."""
    with sessionmaker_for()() as s:
        s.execute(delete(LoginFailure).where(LoginFailure.key == f"account:{email[:250]}"))
        s.commit()
