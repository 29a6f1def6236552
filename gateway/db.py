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
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        cursor.execute("PRAGMA synchronous=FULL")  # WAL+NORMAL can lose a commit on power loss
        problem = durability_problem(mode, cursor.execute("PRAGMA synchronous").fetchone()[0])
        if problem is not None:
            cursor.close()
            raise NotDurable(problem)
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class NotDurable(Exception):
    """SQLite would not keep a commit through a power cut, so a 250 would not mean stored."""


def durability_problem(journal_mode: str, synchronous: int) -> str | None:
    """What is wrong with what SQLite reports after our pragmas, if anything (reliability.md
    F6). ``PRAGMA journal_mode=WAL`` answers with the mode it is really in: a file system
    without shared memory, or a database held in another mode, leaves it elsewhere."""
    mode = str(journal_mode).lower()
    if mode not in ("wal", "delete", "truncate", "persist"):
        return f"SQLite journal_mode is {mode!r}, not WAL: a commit could be lost in a crash"
    if synchronous < 2:
        return f"SQLite synchronous is {synchronous}, not FULL (2): a commit could be lost"
    return None


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
