"""Engine, sessions and migrations. No module-level engine: app.py builds one from Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, *, busy_timeout_ms: int = 10_000) -> Engine:
    """An engine whose SQLite connections are durable (WAL + synchronous=FULL) and take the
    write lock up front (BEGIN IMMEDIATE), so the busy timeout applies instead of a
    deadlock when a read transaction later wants to write."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        _sqlite_pragmas(engine, busy_timeout_ms)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # WAL+NORMAL can lose a commit on power loss
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration; safe to call on each start."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class DatabaseUnavailable(Exception):
    """The database failed mid-work; the work rolled back and waits, unchanged."""


def database_unavailable(error: BaseException) -> bool:
    """Did the database fail rather than the work? (A lost connection, a server going
    away, a lock held past the busy timeout, a full disk.) Such work is retried later as
    it is, never recorded as the message's own failure (reliability.md F5, F21)."""
    if isinstance(
        error,
        DatabaseUnavailable
        | sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.PendingRollbackError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError,
    ):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
