"""Accounts: the web session, the current user, API tokens, users and farm assignments."""

from __future__ import annotations

from fastapi import APIRouter, Response
from khet.service import security
from khet.service.config import service_settings
from khet.service.db import ApiToken, Assignment, Farm, User
from khet.service.dependencies import DB, Admin, CurrentUser, IdPath
from khet.service.schemas import AssignmentIn, SessionIn, TokenIn, TokenOut, UserIn, UserOut
from sqlalchemy import select

from khet.errors import AuthError, ConflictError, InputError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.post("/session", response_model=UserOut, summary="Log in (sets the session cookie)")
def login(body: SessionIn, response: Response, db: DB) -> User:
    """Checks email and password and sets a signed, HttpOnly session cookie for the web pages.
    Scripts and devices use API tokens instead."""
    user = db.scalar(select(User).where(User.email == body.email.strip().lower()))
    if not security.verify_password(body.password, user.password_hash if user else None):
        raise AuthError("Wrong email or password.")
    svc = service_settings()
    response.set_cookie(
        security.SESSION_COOKIE,
        security.sign_session(user.id, svc.session_days),
        max_age=svc.session_days * 86400,
        httponly=True,
        samesite="lax",
        secure=svc.cookie_secure,
        path="/",
    )
    return user


@router.delete("/session", status_code=204, summary="Log out (clears the session cookie)")
def logout(response: Response) -> Response:
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me", response_model=UserOut, summary="Who am I")
def me(user: CurrentUser) -> User:
    return user


@router.post(
    "/tokens",
    response_model=TokenOut,
    status_code=201,
    summary="Make an API token for a device or script",
)
def create_token(body: TokenIn, user: CurrentUser, db: DB) -> TokenOut:
    token, row = make_token(db, user, body.name)
    db.commit()
    return TokenOut(id=row.id, name=row.name, token=token)


def make_token(db, user: User, name: str) -> tuple[str, ApiToken]:
    token = security.new_token()
    row = ApiToken(user_id=user.id, name=name, token_hash=security.token_digest(token))
    db.add(row)
    db.flush()
    return token, row


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user (admin)")
def create_user(body: UserIn, _: Admin, db: DB) -> User:
    return add_user(db, body.email, body.password, body.role, body.name)


def add_user(db, email: str, password: str, role: str, name: str | None = None) -> User:
    email = email.strip().lower()
    if role not in ("farmer", "extension", "admin"):
        raise InputError("The role must be farmer, extension or admin.")
    if len(password) < 8:
        raise InputError("The password must have at least 8 characters.")
    if db.scalar(select(User).where(User.email == email)):
        raise ConflictError(f"There is already a user {email}.")
    user = User(email=email, role=role, name=name, password_hash=security.hash_password(password))
    db.add(user)
    db.commit()
    return user


@router.get("/users", response_model=list[UserOut], summary="List users (admin)")
def list_users(_: Admin, db: DB) -> list[User]:
    return list(db.scalars(select(User).order_by(User.id)))


@router.post(
    "/farms/{farm_id}/assignments",
    status_code=201,
    summary="Assign an extension worker to a farm (admin)",
)
def assign(farm_id: IdPath, body: AssignmentIn, _: Admin, db: DB) -> dict:
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
    row = db.get(Assignment, (farm_id, user_id))
    if row is None:
        raise NotFoundError("No such assignment.")
    db.delete(row)
    db.commit()
    return Response(status_code=204)
