"""The database: SQLAlchemy 2 models and sessions; Alembic (service/migrations) owns the schema.

SQLite in the data folder by default, PostgreSQL when `KHET_DATABASE_URL` says so. The jobs table is
the source of truth for analysis jobs: Huey only carries "look at job N" messages, which a killed
worker can lose, so a job's state, heartbeat and attempts live here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

from khet.settings import Settings, get_settings


def now() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


# SQLite without AUTOINCREMENT hands out the highest id + 1 again after a delete: a deleted
# flight's id (and its folder, and a still-running worker's writes) went to the next tenant's
# flight. PostgreSQL's sequences never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class UtcDateTime(TypeDecorator):
    """A moment, stored in UTC and read back timezone-aware on every database. SQLite keeps no
    zone: the API answered a flight's `created_at` with "Z" when it was made and without a zone
    when it was read back (and a capture time given as +05:00 was stored as if it were UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UtcDateTime()}


class User(Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # farmer, extension or admin
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_used_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()  # None: until revoked

    user: Mapped[User] = relationship()


class WebSession(Base):
    """A logged-in browser. The cookie holds a random token; only its SHA-256 is stored, so
    logging out, a password change or disabling the account ends the session at once."""

    __tablename__ = "sessions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    client: Mapped[str | None] = mapped_column(String(64))  # the address it logged in from
    agent: Mapped[str | None] = mapped_column(String(200))  # its User-Agent, shortened

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """One failed login, counted per account and per client address for the rate limit."""

    __tablename__ = "login_failures"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), index=True)  # "account:<email>", "address:<ip>"
    at: Mapped[datetime] = mapped_column(default=now, index=True)


class WorkerBeat(Base):
    """A job worker says it is alive; /readyz is not ready without a recent beat."""

    __tablename__ = "worker_beats"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=now)


class Farm(Base):
    __tablename__ = "farms"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=now)

    owner: Mapped[User] = relationship()


class Assignment(Base):
    """An extension worker sees the farms an admin assigned to them."""

    __tablename__ = "assignments"

    farm_id: Mapped[int] = mapped_column(
        ForeignKey("farms.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=now)


class Field(Base):
    __tablename__ = "fields"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    crop: Mapped[str | None] = mapped_column(String(100))
    boundary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    area_ha: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=now)

    farm: Mapped[Farm] = relationship()


class Upload(Base):
    """A file arriving in chunks; `offset` bytes of it are safely on disk."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)


class Flight(Base):
    __tablename__ = "flights"
    __table_args__ = (
        UniqueConstraint("field_id", "client_id", name="uq_flight_client_id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    field_id: Mapped[int] = mapped_column(ForeignKey("fields.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(16), default="service")  # service | edge
    client_id: Mapped[str | None] = mapped_column(String(200))
    captured_at: Mapped[str | None] = mapped_column(String(40))
    bands: Mapped[list[Any] | None] = mapped_column(JSON)
    gsd_m: Mapped[float | None] = mapped_column(Float)  # stated ground sample distance, m/px
    # sha256 of what the service analyses (imagery, bands, GSD), to tell a replayed request
    # from a client_id reused for other imagery (service/flights.py request_sha256)
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)  # file names in input/
    imagery: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # how to tile the imagery
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=now)

    field: Mapped[Field] = relationship()
    job: Mapped[Job | None] = relationship(
        back_populates="flight", uselist=False, cascade="all, delete-orphan", passive_deletes=True
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flight_id: Mapped[int] = mapped_column(
        ForeignKey("flights.id", ondelete="CASCADE"), unique=True, index=True
    )
    # queued, running, done or failed
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(200))  # e.g. "placing frame 37 of 167"
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    # Set when a worker claims the job; every later write of that worker names it, so a worker
    # whose job was deleted (or re-queued and claimed by another) changes nothing.
    token: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    queued_at: Mapped[datetime] = mapped_column(default=now)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    flight: Mapped[Flight] = relationship(back_populates="job")


class UserSettings(Base):
    """Per-user preferences of the web pages, e.g. when a field is flagged "needs a visit"."""

    __tablename__ = "user_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=now)


# --- engine and sessions ---------------------------------------------------------------------

_engines: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def get_engine(settings: Settings | None = None) -> Engine:
    """One engine per URL per process (tests switch URLs between tests)."""
    settings = settings or get_settings()
    url = settings.database()
    engine = _engines.get(url)
    if engine is None:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every database engine's connections (tests, forked workers)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def sessionmaker_for(settings: Settings | None = None) -> sessionmaker[Session]:
    """A session factory on the configured database."""
    return sessionmaker(get_engine(settings), expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = sessionmaker_for(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(settings: Settings | None = None) -> None:
    """Bring the schema to the newest Alembic revision (run by `khet serve` and `khet worker`)."""
    from alembic import command
    from alembic.config import Config

    engine = get_engine(settings)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A migration that rebuilds a table drops the old one; with foreign keys on, SQLite
            # would first cascade that drop to every row that refers to it. The pragma only
            # takes effect outside a transaction, hence before `begin()`.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left broken references: {broken[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
