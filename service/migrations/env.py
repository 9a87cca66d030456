"""Alembic environment: the connection comes from `khet.service.db.migrate()`."""

from __future__ import annotations

from alembic import context
from khet.service.db import Base
from sqlalchemy import create_engine

from khet.settings import get_settings

target_metadata = Base.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(get_settings().database())
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
