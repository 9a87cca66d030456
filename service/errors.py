"""Domain errors to HTTP: the one table of status codes (TiTiler's `DEFAULT_STATUS_CODES`).

The errors in khet.errors know nothing of HTTP (the CLI turns them into exit code 2); the service
looks an error's class up here, nearest base class first, and answers with that status.
"""

from __future__ import annotations

from khet.service.dependencies import ForbiddenError
from khet.service.flights import QueueDown, TooManyJobs
from khet.service.ratelimit import TooManyAttempts
from khet.service.tiles import NotGeoreferenced

from khet.errors import (
    AuthError,
    ConflictError,
    InputError,
    KhetError,
    ModelError,
    NotFoundError,
    OutputError,
    TooLargeError,
)

DEFAULT_STATUS_CODES: dict[type[KhetError], int] = {
    KhetError: 400,
    InputError: 422,
    ModelError: 422,
    OutputError: 507,
    NotFoundError: 404,
    NotGeoreferenced: 404,
    AuthError: 401,
    ForbiddenError: 403,
    ConflictError: 409,
    TooLargeError: 413,
    TooManyAttempts: 429,
    TooManyJobs: 429,
    QueueDown: 503,
}

# RFC 9110: a 401 names the scheme that would work.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="khet"'}


def status_for(exc: KhetError) -> int:
    """The HTTP status for a domain error: its own class's entry, else its nearest base's."""
    for cls in type(exc).__mro__:
        if cls in DEFAULT_STATUS_CODES:
            return DEFAULT_STATUS_CODES[cls]
    return 400


def headers_for(exc: KhetError, status: int) -> dict[str, str]:
    """The headers an error's answer carries: its own (Retry-After, ...) and, on a 401, the
    authentication challenge."""
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 401:
        headers = {**CHALLENGE, **headers}
    return headers
