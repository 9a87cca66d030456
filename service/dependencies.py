"""Request dependencies: the database session, who is asking, and what they may see.

Access rule, in one place: a farmer sees the farms they own, an extension worker the farms an
admin assigned to them, an admin everything. Anything else is "not found" (404), never
"forbidden", so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from khet.service import security
from khet.service.db import (
    ApiToken,
    Assignment,
    Farm,
    Field,
    Flight,
    Upload,
    User,
    WebSession,
    now,
    sessionmaker_for,
)
from sqlalchemy import exists, select, true, update
from sqlalchemy.orm import Session, contains_eager, joinedload

from khet.errors import AuthError, KhetError, NotFoundError

MAX_ID = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class ForbiddenError(KhetError):
    """The role does not allow this action (never used to hide another tenant's data)."""

    code = "forbidden"


def get_db() -> Iterator[Session]:
    """A database session for one request, closed after it."""
    session = sessionmaker_for()()
    try:
        yield session
    finally:
        session.close()


DB = Annotated[Session, Depends(get_db)]


SEEN_EVERY = timedelta(minutes=5)  # last-seen times are written at most this often


def _user_from_request(request: Request, db: Session) -> User | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Send the API token as 'Authorization: Bearer <token>'.")
        row = db.scalar(
            select(ApiToken)
            .where(ApiToken.token_hash == security.token_digest(token.strip()))
            .options(joinedload(ApiToken.user))
        )
        t = now()
        if row is None or row.user.disabled:
            raise AuthError("That API token is not valid (revoked or mistyped).")
        if row.expires_at is not None and row.expires_at < t:
            raise AuthError("That API token has expired; make a new one (khet token create).")
        if row.last_used_at is None or row.last_used_at < t - SEEN_EVERY:
            _touch(db, ApiToken, row.id, last_used_at=t)
        return row.user
    cookie = request.cookies.get(security.SESSION_COOKIE)
    if cookie:
        return session_user(db, cookie)
    return None


def session_user(db: Session, cookie: str) -> User | None:
    """The user of a live session, or None for any other cookie (forged, expired, ended)."""
    if len(cookie) > 200:
        return None
    row = db.scalar(
        select(WebSession)
        .where(WebSession.token_hash == security.token_digest(cookie))
        .options(joinedload(WebSession.user))
    )
    t = now()
    if row is None or row.user.disabled or row.expires_at < t:
        return None
    if row.last_seen_at is None or row.last_seen_at < t - SEEN_EVERY:
        _touch(db, WebSession, row.id, last_seen_at=t)
    return row.user


def _touch(db: Session, model, row_id: int, **values) -> None:
    """A short write of its own, so a request never holds a write lock longer than this."""
    try:
        with sessionmaker_for()() as s:
            s.execute(update(model).where(model.id == row_id).values(**values))
            s.commit()
    except Exception:  # a last-seen time is not worth failing a request over
        pass


def current_user_optional(request: Request, db: DB) -> User | None:
    """The logged-in user or None (web pages decide whether to redirect to the login page)."""
    try:
        return _user_from_request(request, db)
    except AuthError:
        return None


#: The two ways a request says who it is, as the OpenAPI document describes them. They only
#: declare: `_user_from_request` reads and checks both, so a malformed header gets Khet's own
#: message and a 401 (FastAPI's own checks would answer 403 without saying what to send).
TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token: `khet token create EMAIL`, or POST /api/v1/tokens.",
)
SESSION = APIKeyCookie(
    name=security.SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description="The web app's session cookie, set by POST /api/v1/session.",
)
#: For a route that finds its user itself (`require_user`): the same two, documented.
AUTHENTICATED = [Depends(TOKEN), Depends(SESSION)]


def current_user(
    request: Request,
    db: DB,
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(TOKEN)],
    _session: Annotated[str | None, Depends(SESSION)],
) -> User:
    """The user of a request (API token or session cookie); AuthError when none."""
    return require_user(request, db)


def require_user(request: Request, db: Session) -> User:
    """`current_user` outside FastAPI's dependencies (the tile route's worker thread)."""
    user = _user_from_request(request, db)
    if user is None:
        raise AuthError("Log in first, or send an API token (Authorization: Bearer <token>).")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_admin(user: CurrentUser) -> User:
    """The current user when an administrator, else ForbiddenError."""
    if user.role != "admin":
        raise ForbiddenError("Only an administrator can do this.")
    return user


Admin = Annotated[User, Depends(require_admin)]


# --- what a user may see ------------------------------------------------------------------------


def visible_farms(user: User):
    """A select() of the farms this user may see."""
    q = select(Farm)
    if user.role == "farmer":
        return q.where(Farm.owner_id == user.id)
    return q.where(farm_visible(user, Farm.id))


def farm_visible(user: User, farm_id):
    """A SQL condition: the farm with id `farm_id` (a column) is one this user may see."""
    if user.role == "admin":
        return true()
    if user.role == "extension":
        return exists().where(Assignment.farm_id == farm_id).where(Assignment.user_id == user.id)
    return exists().where(Farm.id == farm_id).where(Farm.owner_id == user.id)


def can_edit(user: User, farm: Farm) -> bool:
    """Owners and admins change farms and fields; extension workers read and add flights."""
    return user.role == "admin" or farm.owner_id == user.id


def get_farm(db: Session, user: User, farm_id: int) -> Farm:
    """A farm the user may see; NotFoundError otherwise (also when it is someone else's)."""
    farm = db.scalar(visible_farms(user).where(Farm.id == farm_id))
    if farm is None:
        raise NotFoundError("No such farm.")
    return farm


def get_field(db: Session, user: User, field_id: int) -> Field:
    """A field the user may see; NotFoundError otherwise (also when it is someone else's)."""
    field = db.scalar(
        select(Field).where(Field.id == field_id).where(farm_visible(user, Field.farm_id))
    )
    if field is None:
        raise NotFoundError("No such field.")
    return field


def get_flight(db: Session, user: User, flight_id: int, *options) -> Flight:
    """The flight with its field and job, in one query; `options` add loader options."""
    flight = db.scalar(
        select(Flight)
        .join(Flight.field)
        .where(Flight.id == flight_id)
        .where(farm_visible(user, Field.farm_id))
        .options(contains_eager(Flight.field), joinedload(Flight.job), *options)
    )
    if flight is None:
        raise NotFoundError("No such flight.")
    return flight


def get_upload(db: Session, user: User, upload_id: str) -> Upload:
    """Uploads belong to the user who sent them, whatever their role."""
    up = db.get(Upload, upload_id)
    if up is None or up.user_id != user.id:
        raise NotFoundError("No such upload.")
    return up
