"""Request and response bodies of the API (what OpenAPI shows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from khet.vision.gsd import GSD_MAX_M, GSD_MIN_M
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# No control characters, and no bidirectional overrides or isolates (U+202A-U+202E,
# U+2066-U+2069): they make a name display as something else (an override turns
# "farm-exe.pdf" around).
# Urdu names need none of them; the pages set the direction themselves.
NAME_PATTERN = r"^[^\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]+$"
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NAME_PATTERN),
]
#: One @, a dot after it, no spaces or control characters: the API's check and `khet user add`'s.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$"
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=EMAIL_PATTERN),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Role = Literal["farmer", "extension", "admin"]
UploadId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- people -----------------------------------------------------------------------------------


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    name: str | None
    role: str
    disabled: bool = False


class UserPatch(Strict):
    disabled: bool | None = Field(
        None, description="true: the account cannot log in and its sessions end"
    )


class PasswordIn(Strict):
    current_password: Annotated[str, StringConstraints(max_length=256)]
    new_password: Password


class UserIn(Strict):
    email: Email
    password: Password
    role: Role = "farmer"
    name: Name | None = None


class SessionIn(Strict):
    email: Annotated[str, StringConstraints(max_length=254)]
    password: Annotated[str, StringConstraints(max_length=256)]


class TokenIn(Strict):
    name: Name = "device"
    days: int | None = Field(
        None,
        ge=0,
        le=3650,
        description="Valid this many days (default KHET_TOKEN_DAYS); 0: until revoked",
    )


class TokenOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="Shown once; send it as 'Authorization: Bearer <token>'.")
    expires_at: datetime | None = None


class TokenInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None
    client: str | None
    agent: str | None
    current: bool = False


class AssignmentIn(Strict):
    user_id: int = Field(ge=1, le=2**31 - 1, description="An extension worker's user id")


# --- farms and fields -------------------------------------------------------------------------


class FarmIn(Strict):
    name: Name
    owner_id: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Admins only: the farmer who owns it"
    )


class FarmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    owner_id: int
    created_at: datetime


class FieldIn(Strict):
    name: Name
    crop: Name | None = None
    boundary: dict[str, Any] | None = Field(
        None,
        description="GeoJSON Polygon or MultiPolygon in lon/lat (WGS84), bare, as a Feature "
        "or in a FeatureCollection (a layer exported from QGIS; its polygons together); closed "
        "rings, not crossing itself, between 10 m² and 10,000 ha.",
    )


class FieldPatch(Strict):
    name: Name | None = None
    crop: Name | None = None
    boundary: dict[str, Any] | None = None


class FieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    farm_id: int
    name: str
    crop: str | None
    boundary: dict[str, Any] | None
    area_ha: float | None
    created_at: datetime


# --- uploads ----------------------------------------------------------------------------------


class UploadIn(Strict):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    size: int = Field(ge=1, le=2**53, description="Total size in bytes")
    sha256: Sha256 = Field(description="SHA-256 of the whole file, hex")


class UploadOut(BaseModel):
    id: str
    offset: int = Field(description="Bytes stored so far: send the next chunk from here")
    size: int
    complete: bool
    filename: str


class ChunkOut(BaseModel):
    offset: int
    complete: bool


# --- flights ----------------------------------------------------------------------------------


#: The earliest capture date taken: consumer drones with cameras came after it; an earlier
#: date is a clock that was never set (0001-01-01, the Unix epoch), not a flight.
EARLIEST_CAPTURE = datetime(2000, 1, 1, tzinfo=UTC)
#: How far ahead of the server's clock a capture may be: a device's clock set a little
#: ahead, or its local date past midnight before the server's.
CAPTURE_AHEAD = timedelta(days=1)


def capture_time(value: datetime) -> datetime:
    """When a flight was flown, checked: a time without a zone (EXIF camera time, a date from
    the upload form) is taken as UTC, one with a zone keeps it; ValueError, saying why, for a
    date before 2000 or more than a day after now."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    if value < EARLIEST_CAPTURE:
        raise ValueError(
            f"{value.date().isoformat()} is before 2000: the device's clock was "
            "probably never set; send the date the field was flown, or leave it out"
        )
    if value > datetime.now(UTC) + CAPTURE_AHEAD:
        raise ValueError(
            f"{value.date().isoformat()} is in the future: send the date the field "
            "was flown, or leave it out"
        )
    return value


# A survey flight is 50-500 frames, or five times as many band files for a multispectral one.
MAX_FLIGHT_FILES = 2500


BandNames = Annotated[
    list[
        Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")]
    ]
    | None,
    Field(
        min_length=1,
        max_length=32,
        description="Band names in file order, e.g. ['red','green','blue']; leave it out for the "
        "names the files give",
    ),
]
StatedGsd = Annotated[
    float | None,
    Field(
        ge=GSD_MIN_M,
        lt=GSD_MAX_M,
        allow_inf_nan=False,
        description="Ground sample distance in metres per pixel (e.g. 0.03), for imagery whose "
        "files do not tell it (a photo without its flying height). Default: from the files.",
    ),
]


class FlightIn(Strict):
    uploads: list[UploadId] = Field(
        default_factory=list,
        max_length=MAX_FLIGHT_FILES,
        description="Upload ids of the imagery: one file, the band files of one capture, or "
        "every frame of a flight (mosaicked by the job). May be empty when `results` are given.",
    )
    bands: BandNames = None
    captured_at: datetime | None = Field(
        None,
        description="When the flight was flown (ISO 8601), from 2000 to a day after now; a "
        "time without a zone is taken as UTC.",
    )
    gsd: StatedGsd = None
    client_id: (
        Annotated[
            str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
        ]
        | None
    ) = Field(
        None,
        description="Idempotency key: the same client_id for the same field returns the "
        "existing flight (200) instead of creating another; reused with other uploads, bands "
        "or gsd it is refused (409).",
    )
    results: dict[Annotated[str, StringConstraints(max_length=64)], UploadId] | None = Field(
        None,
        description="Results an edge device already computed: {'summary.json': upload_id, "
        "'classes.tif': ..., 'zones.geojson': ..., 'indices/ndvi.tif': ...}. "
        "summary.json is required; no analysis job runs.",
    )

    @field_validator("captured_at")
    @classmethod
    def _capture_time(cls, v: datetime | None) -> datetime | None:
        return None if v is None else capture_time(v)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    status: Literal["queued", "running", "done", "failed"]
    progress: float = Field(description="Fraction of the job done, 0..1")
    stage: str | None = Field(
        None, description='What the job is doing, e.g. "placing frame 37 of 167" (a flight)'
    )
    error: str | None = Field(description="What went wrong, in plain words")
    attempts: int
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RetryIn(Strict):
    """What a retry may correct: the band names or the ground sample distance that a failed
    analysis asked for (left out: as the flight had them; null: taken from the files)."""

    bands: BandNames = None
    gsd: StatedGsd = None


class FlightOut(BaseModel):
    id: int
    field_id: int
    farm_id: int
    status: Literal["queued", "running", "done", "failed"]
    progress: float
    error: str | None
    source: str
    client_id: str | None
    captured_at: str | None
    inputs: list[str]
    bands: list[str] | None
    gsd: float | None = Field(
        None, description="The ground sample distance stated for the flight, if any"
    )
    created_at: datetime
    job: JobOut | None
    summary: dict[str, Any] | None
    results: list[str] = Field(description="Result files ready to download")


class Problem(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. not_found, bad_input")
    detail: str = Field(description="What is wrong, for a person")
