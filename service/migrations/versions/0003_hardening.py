"""hardening: ids never reused, server-side sessions, token expiry, disabled accounts, job
tokens, login rate limit, worker heartbeats

Revision ID: 0003_hardening
Revises: 0002
Create Date: 2026-11-29 16:30:00

SQLite tables are rebuilt with AUTOINCREMENT (batch mode copies every row; `migrate()` turns
foreign keys off meanwhile, so the drop of an old table cascades nowhere). PostgreSQL's serial
ids never went back, so there only the new columns and tables are added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003_hardening"
down_revision = "0002"
branch_labels = None
depends_on = None

ID_TABLES = ("users", "api_tokens", "farms", "fields", "flights", "jobs")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ID_TABLES:
        kwargs: dict[str, Any] = {
            "recreate": "always",
            "table_kwargs": {"sqlite_autoincrement": True},
        }
        with op.batch_alter_table(table, **(kwargs if sqlite else {})) as batch:
            if table == "users":
                batch.add_column(
                    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
                )
            elif table == "api_tokens":
                batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
            elif table == "jobs":
                batch.add_column(sa.Column("token", sa.String(length=32)))
    # Tokens made before expiry existed stay valid for a year from now, not forever.
    year = datetime.now(UTC) + timedelta(days=365)
    op.execute(sa.text("UPDATE api_tokens SET expires_at = :t").bindparams(t=year))

    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sessions_token_hash", "sessions", ["token_hash"], unique=True)
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_login_failures_key", "login_failures", ["key"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    op.create_table(
        "worker_beats",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("worker_beats")
    op.drop_table("login_failures")
    op.drop_table("sessions")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("token")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled")
