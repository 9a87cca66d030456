"""Accounts: web sessions, the current user, passwords, API tokens, users and assignments.

Every credential can be listed and ended: sessions (`/sessions`), API tokens (`/tokens`, also
`khet token list/revoke`), and a whole account (an admin disables it: its sessions end and its
tokens stop working). Logins are rate-limited per account and per client address.
"""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from khet.service import ratelimit, security
from khet.service.config import service_settings
from khet.service.db import ApiToken, Assignment, Farm, User, WebSession, now
from khet.service.dependencies import DB, Admin, CurrentUser, ForbiddenError, IdPath
from khet.service.schemas import (
    EMAIL_PATTERN,
    AssignmentIn,
    PasswordIn,
    SessionIn,
    SessionOut,
    TokenIn,
    TokenInfo,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from khet.errors import AuthError, ConflictError, InputError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["accounts"])


# --- sessions ----------------------------------------------------------------------------------


def login_user(db: Session, email: str, password: str, request: Request) -> User:
    """The user these credentials name, or AuthError; TooManyAttempts once the account or the
    client address used up its failed logins (checked before the slow password hash)."""
    email = email.strip().lower()[:254]
    address = ratelimit.client_address(request)
    ratelimit.check_login_allowed(email, address)
    user = db.scalar(select(User).where(User.email == email)) if email else None
    ok = security.verify_password(password, user.password_hash if user else None)
    if not ok or user is None or user.disabled:
        ratelimit.record_login_failure(email, address)
        raise AuthError("Wrong email or password.")
    ratelimit.clear_account_failures(email)
    return user


def start_session(db: Session, user: User, request: Request, response: Response) -> WebSession:
    """A new server-side session and its cookie."""
    svc = service_settings()
    token = security.new_session_token()
    row = WebSession(
        user_id=user.id,
        token_hash=security.token_digest(token),
        expires_at=now() + timedelta(days=svc.session_days),
        last_seen_at=now(),
        client=ratelimit.client_address(request)[:64],
        agent=(request.headers.get("user-agent") or "")[:200] or None,
    )
    db.add(row)
    db.commit()
    secure = svc.cookie_secure if svc.cookie_secure is not None else request.url.scheme == "https"
    response.set_cookie(
        security.SESSION_COOKIE,
        token,
        max_age=svc.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    return row


def current_session_id(db: Session, request: Request) -> int | None:
    """The id of the session this request's cookie belongs to, if any."""
    cookie = request.cookies.get(security.SESSION_COOKIE)
    if not cookie or len(cookie) > 200:
        return None
    return db.scalar(
        select(WebSession.id).where(WebSession.token_hash == security.token_digest(cookie))
    )


def end_session(db: Session, request: Request, response: Response) -> None:
    """Logging out deletes the session row: the cookie is worthless from now on, even if a
    copy of it survives somewhere."""
    sid = current_session_id(db, request)
    if sid is not None:
        db.execute(delete(WebSession).where(WebSession.id == sid))
        db.commit()
    response.delete_cookie(security.SESSION_COOKIE, path="/")


@router.post(
    "/session",
    response_model=UserOut,
    summary="Log in (sets the session cookie)",
    responses={429: {"description": "Too many failed logins; wait (Retry-After)"}},
)
def login(body: SessionIn, request: Request, response: Response, db: DB) -> User:
    """Checks email and password and starts a session (an HttpOnly cookie) for the web pages.
    Scripts and devices use API tokens instead. After `KHET_LOGIN_FAILURES_PER_ACCOUNT` failed
    logins of one account (or `..._PER_ADDRESS` from one address) within
    `KHET_LOGIN_WINDOW_MINUTES`, logins are refused with 429 until the window has passed."""
    user = login_user(db, body.email, body.password, request)
    start_session(db, user, request, response)
    return user


@router.delete("/session", status_code=204, summary="Log out (ends the session)")
def logout(request: Request, response: Response, db: DB) -> Response:
    """End the session of this browser and clear its cookie."""
    end_session(db, request, response)
    response.status_code = 204
    return response


@router.get("/sessions", response_model=list[SessionOut], summary="Your logged-in browsers")
def list_sessions(request: Request, user: CurrentUser, db: DB) -> list[SessionOut]:
    """Your logged-in sessions; `current` marks this one."""
    current = current_session_id(db, request)
    rows = db.scalars(
        select(WebSession).where(WebSession.user_id == user.id).order_by(WebSession.id)
    )
    return [
        SessionOut.model_validate(r).model_copy(update={"current": r.id == current}) for r in rows
    ]


@router.delete("/sessions/{session_id}", status_code=204, summary="End one of your sessions")
def revoke_session(session_id: IdPath, user: CurrentUser, db: DB) -> Response:
    """End one of your sessions (another browser or device)."""
    row = db.get(WebSession, session_id)
    if row is None or row.user_id != user.id:
        raise NotFoundError("No such session.")
    db.delete(row)
    db.commit()
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, summary="Who am I")
def me(user: CurrentUser) -> User:
    """The account you are logged in as."""
    return user


@router.put(
    "/me/password",
    status_code=204,
    summary="Change your password (ends your other sessions)",
    responses={429: {"description": "Too many failed attempts"}},
)
def change_password(body: PasswordIn, request: Request, user: CurrentUser, db: DB) -> Response:
    """Check the current password, set the new one and end your other sessions."""
    login_user(db, user.email, body.current_password, request)
    set_password(db, user, body.new_password, keep_session=current_session_id(db, request))
    return Response(status_code=204)


def set_password(db: Session, user: User, password: str, keep_session: int | None = None) -> None:
    """A new password; every session but `keep_session` ends (a stolen cookie with it)."""
    security.check_password_strength(password, user.email)
    user.password_hash = security.hash_password(password)
    q = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_session is not None:
        q = q.where(WebSession.id != keep_session)
    db.execute(q)
    db.commit()


# --- API tokens --------------------------------------------------------------------------------


@router.post(
    "/tokens",
    response_model=TokenOut,
    status_code=201,
    summary="Make an API token for a device or script",
)
def create_token(body: TokenIn, user: CurrentUser, db: DB) -> TokenOut:
    """A new API token; its value is shown only in this answer."""
    token, row = make_token(db, user, body.name, body.days)
    db.commit()
    return TokenOut(id=row.id, name=row.name, token=token, expires_at=row.expires_at)


def make_token(db, user: User, name: str, days: int | None = None) -> tuple[str, ApiToken]:
    """A new token, valid `days` days (default KHET_TOKEN_DAYS; 0 = until revoked)."""
    days = service_settings().token_days if days is None else days
    token = security.new_token()
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=security.token_digest(token),
        expires_at=now() + timedelta(days=days) if days else None,
    )
    db.add(row)
    db.flush()
    return token, row


@router.get("/tokens", response_model=list[TokenInfo], summary="Your API tokens (not their values)")
def list_tokens(user: CurrentUser, db: DB) -> list[ApiToken]:
    """Your API tokens, without their values."""
    return list(
        db.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
    )


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_token(token_id: IdPath, user: CurrentUser, db: DB) -> Response:
    """Your own tokens; an administrator may revoke anyone's."""
    row = db.get(ApiToken, token_id)
    if row is None or (row.user_id != user.id and user.role != "admin"):
        raise NotFoundError("No such token.")
    db.delete(row)
    db.commit()
    return Response(status_code=204)


# --- users (admin) -----------------------------------------------------------------------------


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user (admin)")
def create_user(body: UserIn, _: Admin, db: DB) -> User:
    """Add an account (administrators only)."""
    return add_user(db, body.email, body.password, body.role, body.name)


def add_user(db, email: str, password: str, role: str, name: str | None = None) -> User:
    """Create an account after checking the role, the e-mail and the password's strength."""
    email = email.strip().lower()
    if len(email) > 254 or not re.fullmatch(EMAIL_PATTERN, email):
        raise InputError(f"{email!r} is not an e-mail address (name@example.org).")
    if role not in ("farmer", "extension", "admin"):
        raise InputError("The role must be farmer, extension or admin.")
    security.check_password_strength(password, email)
    if db.scalar(select(User).where(User.email == email)):
        raise ConflictError(f"There is already a user {email}.")
    user = User(email=email, role=role, name=name, password_hash=security.hash_password(password))
    db.add(user)
    db.commit()
    return user


@router.get("/users", response_model=list[UserOut], summary="List users (admin)")
def list_users(_: Admin, db: DB) -> list[User]:
    """Every account (administrators only)."""
    return list(db.scalars(select(User).order_by(User.id)))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Disable or enable an account (admin); disabling ends its sessions",
)
def patch_user(user_id: IdPath, body: UserPatch, admin: Admin, db: DB) -> User:
    """Disable or enable an account; disabling ends its sessions and tokens."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFoundError("No such user.")
    if body.disabled is not None:
        if user.id == admin.id and body.disabled:
            raise ForbiddenError("You cannot disable your own account.")
        set_disabled(db, user, body.disabled)
    return user


def set_disabled(db: Session, user: User, disabled: bool) -> None:
    """A disabled account cannot log in, its sessions end now and its tokens stop working
    (they work again if it is enabled again)."""
    user.disabled = disabled
    if disabled:
        db.execute(delete(WebSession).where(WebSession.user_id == user.id))
    db.commit()


@router.post(
    "/farms/{farm_id}/assignments",
    status_code=201,
    summary="Assign an extension worker to a farm (admin)",
)
def assign(farm_id: IdPath, body: AssignmentIn, _: Admin, db: DB) -> dict:
    """Let an extension worker see a farm (administrators only)."""
    if db.get(Farm, farm_id) is None:
        raise NotFoundError("No such farm.")
    worker = db.get(User, body.user_id)
    if worker is None:
        raise NotFoundError("No such user.")
    if worker.role != "extension":
        raise InputError(
            f"{worker.email} is a {worker.role}; only extension workers are assigned farms."
        )
    if db.get(Assignment, (farm_id, worker.id)) is None:
        db.add(Assignment(farm_id=farm_id, user_id=worker.id))
        db.commit()
    return {"farm_id": farm_id, "user_id": worker.id}


@router.delete(
    "/farms/{farm_id}/assignments/{user_id}",
    status_code=204,
    summary="Remove an extension worker from a farm (admin)",
)
def unassign(farm_id: IdPath, user_id: IdPath, _: Admin, db: DB) -> Response:
    """Take a farm away from an extension worker (administrators only)."""
    row = db.get(Assignment, (farm_id, user_id))
    if row is None:
        raise NotFoundError("No such assignment.")
    db.delete(row)
    db.commit()
    return Response(status_code=204)
