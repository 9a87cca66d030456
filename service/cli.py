"""`khet serve`, `khet worker`, `khet user`, `khet token`.

Import-light on purpose: FastAPI, SQLAlchemy and uvicorn load inside the handlers, so `khet
analyze` stays fast and works without the service extra.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys


def register(subparsers) -> None:
    """Add `khet serve`, `khet worker`, `khet user` and `khet token` to the parser."""
    p = subparsers.add_parser(
        "serve",
        help="Run the web service with an embedded worker",
        description="Run the API (and pages) with uvicorn, plus a job "
        "worker unless --no-worker. Needs no other setting: "
        "SQLite and the job queue live in KHET_DATA_DIR.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="Do not start a worker (run `khet worker` elsewhere, e.g. with Redis)",
    )
    p.add_argument("--workers", type=int, default=1, help="Jobs run at the same time by the worker")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="Web server processes (default: one per core, at most 4). One Python process "
        "serves map tiles on about one core, whatever the cores",
    )
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("worker", help="Run a job worker (analysis jobs from the queue)")
    p.add_argument("--workers", type=int, default=1, help="Jobs run at the same time")
    p.add_argument("--parent-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_worker)

    p = subparsers.add_parser("user", help="Manage service accounts")
    sub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="Add a user")
    a.add_argument("email")
    a.add_argument("--role", choices=("farmer", "extension", "admin"), default="farmer")
    a.add_argument("--password", help="At least 8 characters; default: read KHET_PASSWORD or ask")
    a.add_argument("--name")
    a.set_defaults(func=_user_add)
    a = sub.add_parser("list", help="List users")
    a.set_defaults(func=_user_list)
    a = sub.add_parser("assign", help="Assign an extension worker to a farm")
    a.add_argument("email")
    a.add_argument("farm_id", type=int)
    a.set_defaults(func=_user_assign)
    a = sub.add_parser("disable", help="Disable an account: no login, sessions end, tokens stop")
    a.add_argument("email")
    a.set_defaults(func=_user_disable, disabled=True)
    a = sub.add_parser("enable", help="Enable a disabled account again")
    a.add_argument("email")
    a.set_defaults(func=_user_disable, disabled=False)
    a = sub.add_parser("password", help="Set a user's password (ends their sessions)")
    a.add_argument("email")
    a.add_argument("--password", help="Default: read KHET_PASSWORD or ask")
    a.set_defaults(func=_user_password)

    p = subparsers.add_parser("token", help="API tokens for devices and scripts")
    sub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    a = sub.add_parser("create", help="Make a token for a user and print it (shown once)")
    a.add_argument("email")
    a.add_argument("--name", default="device")
    a.add_argument(
        "--days",
        type=int,
        default=None,
        help="Valid this many days (default KHET_TOKEN_DAYS, 365); 0: until revoked",
    )
    a.set_defaults(func=_token_create)
    a = sub.add_parser("list", help="List tokens (id, user, name, created, last used, expires)")
    a.add_argument("email", nargs="?", help="Only this user's tokens")
    a.set_defaults(func=_token_list)
    a = sub.add_parser("revoke", help="Revoke a token by its id (from `khet token list`)")
    a.add_argument("token_id", type=int)
    a.set_defaults(func=_token_revoke)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from khet.service.db import migrate

    from khet.errors import InputError

    processes = min(os.cpu_count() or 1, 4) if args.processes is None else args.processes
    if processes < 1:
        raise InputError("--processes must be 1 or more.")
    _setup_logging()
    migrate()
    worker = None
    if not args.no_worker:
        # A separate process: analysis is CPU-heavy and must not slow the API's event loop.
        worker = WorkerSupervisor(args.workers)
        worker.start()
    # uvicorn re-raises SIGTERM after its graceful shutdown; with Python's default handler that
    # kills this process before `finally` stops the worker, leaving it orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ["KHET_SERVE_PID"] = str(os.getpid())  # its web processes die with it
    try:
        uvicorn.run(
            "khet.service.main:served_app",
            factory=True,
            workers=processes,
            http="khet.service.main:NoDelayHTTP",
            host=args.host,
            port=args.port,
            log_level="info",
            proxy_headers=True,
        )
    finally:
        if worker is not None:
            worker.stop()
    return 0


class WorkerSupervisor:
    """The job worker of `khet serve`: started, restarted when it dies, and tied to this
    process so that it never outlives it.

    The worker gets the read end of a pipe whose write end only this process holds; when this
    process dies, however it dies (`kill -9` included), the kernel closes the write end and the
    worker, reading end-of-file, stops itself. A worker that dies is started again after a
    pause that grows while it keeps dying (1 s, 2 s, ... at most 60 s).
    """

    def __init__(self, workers: int) -> None:
        import threading

        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.read_fd, self.write_fd = os.pipe()  # not inherited by uvicorn's web processes
        self.thread = threading.Thread(target=self._watch, daemon=True, name="khet-supervisor")

    def start(self) -> None:
        self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "khet.cli",
                    "worker",
                    "--workers",
                    str(self.workers),
                    "--parent-fd",
                    str(self.read_fd),
                ],
                pass_fds=(self.read_fd,),
            )

    def _watch(self) -> None:
        import time

        log = logging.getLogger("khet.service.serve")
        pause = 1.0
        while not self.stopping.is_set():
            proc = self.proc
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - started > 60:
                pause = 1.0
            log.warning(
                "the job worker stopped (exit %s); starting it again in %.0f s", code, pause
            )
            if self.stopping.wait(pause):
                return
            pause = min(60.0, pause * 2)
            self._spawn()

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _worker(args: argparse.Namespace) -> int:
    from khet.service.jobs import run_worker

    _setup_logging()
    run_worker(workers=max(1, args.workers), parent_fd=args.parent_fd)
    return 0


def _password(args: argparse.Namespace) -> str:
    password = args.password or os.environ.get("KHET_PASSWORD")
    if not password:
        import getpass

        password = getpass.getpass(f"Password for {args.email}: ")
    return password


def _user_add(args: argparse.Namespace) -> int:
    from khet.service.db import migrate, session_scope
    from khet.service.routers.auth import add_user

    password = _password(args)
    migrate()
    with session_scope() as db:
        user = add_user(db, args.email, password, args.role, args.name)
        print(f"user {user.id} {user.email} ({user.role})")
    return 0


def _user_list(_: argparse.Namespace) -> int:
    from khet.service.db import User, migrate, session_scope
    from sqlalchemy import select

    migrate()
    with session_scope() as db:
        for u in db.scalars(select(User).order_by(User.id)):
            print(f"{u.id}\t{u.email}\t{u.role}")
    return 0


def _find_user(db, email: str):
    from khet.service.db import User
    from sqlalchemy import select

    from khet.errors import NotFoundError

    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFoundError(f"No user {email}; add one with `khet user add`.")
    return user


def _user_assign(args: argparse.Namespace) -> int:
    from khet.service.db import Assignment, Farm, migrate, session_scope

    from khet.errors import InputError, NotFoundError

    migrate()
    with session_scope() as db:
        user = _find_user(db, args.email)
        if user.role != "extension":
            raise InputError(f"{user.email} is a {user.role}, not an extension worker.")
        if db.get(Farm, args.farm_id) is None:
            raise NotFoundError(f"No farm {args.farm_id}.")
        if db.get(Assignment, (args.farm_id, user.id)) is None:
            db.add(Assignment(farm_id=args.farm_id, user_id=user.id))
    print(f"{args.email} assigned to farm {args.farm_id}")
    return 0


def _user_disable(args: argparse.Namespace) -> int:
    from khet.service.db import migrate, session_scope
    from khet.service.routers.auth import set_disabled

    migrate()
    with session_scope() as db:
        set_disabled(db, _find_user(db, args.email), args.disabled)
    print(f"{args.email} {'disabled' if args.disabled else 'enabled'}")
    return 0


def _user_password(args: argparse.Namespace) -> int:
    from khet.service.db import migrate, session_scope
    from khet.service.routers.auth import set_password

    password = _password(args)
    migrate()
    with session_scope() as db:
        set_password(db, _find_user(db, args.email), password)
    print(f"password of {args.email} changed; their sessions ended")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from khet.service.db import migrate, session_scope
    from khet.service.routers.auth import make_token

    from khet.errors import InputError

    if args.days is not None and not 0 <= args.days <= 3650:
        raise InputError("--days must be between 0 (until revoked) and 3650.")
    migrate()
    with session_scope() as db:
        token, _ = make_token(db, _find_user(db, args.email), args.name, args.days)
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from khet.service.db import ApiToken, User, migrate, session_scope
    from sqlalchemy import select

    migrate()
    with session_scope() as db:
        q = select(ApiToken, User.email).join(User).order_by(ApiToken.id)
        if args.email:
            q = q.where(ApiToken.user_id == _find_user(db, args.email).id)
        print("id\tuser\tname\tcreated\tlast used\texpires")
        for t, email in db.execute(q):
            dates = [
                d.strftime("%Y-%m-%d") if d else "-"
                for d in (t.created_at, t.last_used_at, t.expires_at)
            ]
            if t.expires_at is None:
                dates[2] = "never"
            print("\t".join([str(t.id), email, t.name, *dates]))
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from khet.service.db import ApiToken, migrate, session_scope

    from khet.errors import NotFoundError

    migrate()
    with session_scope() as db:
        row = db.get(ApiToken, args.token_id)
        if row is None:
            raise NotFoundError(f"No token {args.token_id}; see `khet token list`.")
        db.delete(row)
    print(f"token {args.token_id} revoked")
    return 0
