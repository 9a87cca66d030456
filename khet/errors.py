"""The one exception family.

Messages are written for a farmer or an extension worker: what is wrong and what to do, in one
line, without jargon where it can be avoided. The CLI prints them and exits 2; the service turns
them into 4xx JSON through its own table of status codes (service/errors.py): nothing here knows
of HTTP.
"""

from __future__ import annotations

import re


class KhetError(Exception):
    """Something the user can fix: bad input, a missing band, an unwritable folder."""

    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(KhetError):
    """The imagery cannot be used: not an image, damaged, too large, an unsupported pixel type."""

    code = "bad_input"


class DamagedError(InputError):
    """A file that opens but cannot be read through: damaged, or cut short by a copy."""


class BandError(InputError):
    """The imagery lacks a band that a model or index needs, or its bands cannot be named."""

    code = "bad_bands"


class ModelError(KhetError):
    """A model bundle is missing, damaged, or of a format this version cannot run."""

    code = "bad_model"


class OutputError(KhetError):
    """Results cannot be written: folder not writable, disk full."""

    code = "cannot_write"


class NotFoundError(KhetError):
    """Not there, or not yours: the service answers both the same way so ids cannot be probed."""

    code = "not_found"


class AuthError(KhetError):
    """Not logged in or the token is wrong."""

    code = "unauthorized"


class ConflictError(KhetError):
    """The request clashes with what is stored (a duplicate name, a job already running)."""

    code = "conflict"


class TooLargeError(KhetError):
    """An upload or image over the configured limit."""

    code = "too_large"


def short_reason(e: BaseException) -> str:
    """The first line of an error's message for a person (160 characters at most): GDAL's own
    message where rasterio only says "See previous exception", without GDAL's advice to its own
    users ("can be turned as a warning by setting GDAL_...")."""
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    cause = e.__cause__ or e.__context__
    if "See previous exception" in s and cause is not None:  # rasterio's wrapper: GDAL's own
        return short_reason(cause)
    s = re.sub(r"\s*\(this error can be turned as a warning[^)]*\)", "", s)
    return s[:160]
