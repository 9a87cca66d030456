"""flight gsd: the ground sample distance a user states for a flight (metres per pixel)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flights") as batch:
        batch.add_column(sa.Column("gsd_m", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flights") as batch:
        batch.drop_column("gsd_m")
