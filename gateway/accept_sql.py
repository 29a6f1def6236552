"""The accept transaction's three statements, run on the driver's own connection.

Why not the ORM or Core here: this transaction runs while SMTP clients wait for 250, and
measured per batch SQLAlchemy's execution layer cost ~1.1 ms of CPU around ~0.2 ms of
SQLite work. The SQL is plain and portable (``IN``, ``ON CONFLICT DO NOTHING``,
``RETURNING``: SQLite ≥ 3.35 and PostgreSQL); values go through each column's own
SQLAlchemy bind processor, so they are stored exactly as the ORM stores them and read
back by it unchanged. Everything else in the gateway stays on the ORM.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Table

from gateway.models import Message, RawMessage

Row = Mapping[str, Any]
LOCK_POLL_FIRST = 0.0002  # seconds between tries for SQLite's write lock, growing to
LOCK_POLL_MAX = 0.002


class AcceptStatements:
    """The dedupe look-up, the raw-bytes insert and the message insert for one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self.integrity_error: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        self._processors: dict[tuple[str, tuple[str, ...]], list[Callable[[Any], Any]]] = {}

    def _columns(self, table: Table, names: tuple[str, ...]) -> list[Callable[[Any], Any]]:
        key = (table.name, names)
        if key not in self._processors:
            # The dialect's own type (PostgreSQL's JSON is not the generic one): the
            # generic JSON has no bind processor there, and psycopg would then send a
            # list as an ARRAY literal.
            types = [table.c[n].type.dialect_impl(self._dialect) for n in names]
            self._processors[key] = [t.bind_processor(self._dialect) or _same for t in types]
        return self._processors[key]

    def _values(
        self, table: Table, names: tuple[str, ...], rows: Iterable[Row]
    ) -> list[tuple[Any, ...]]:
        processors = self._columns(table, names)
        return [tuple(p(row[n]) for p, n in zip(processors, names, strict=True)) for row in rows]

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def marks(self, count: int) -> str:
        return ", ".join([self._mark] * count)


class _Transaction:
    """One driver connection from the engine's pool, one transaction, committed on exit."""

    def __init__(self, statements: AcceptStatements) -> None:
        self._s = statements

    def __enter__(self) -> _Transaction:
        self._raw = self._s._engine.raw_connection()
        self._cursor = self._raw.cursor()
        if self._s._sqlite:  # the driver is in autocommit mode; take the write lock now
            _begin_immediate(self._cursor)
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if kind is None:
                self._raw.commit()
            else:
                self._raw.rollback()
        finally:
            self._cursor.close()
            self._raw.close()  # back to the pool

    def existing(
        self, keys: Sequence[str], message_ids: Sequence[str]
    ) -> list[tuple[int, str, str, str | None]]:
        """Rows with one of these content keys or Message-IDs: (id, key, sha256, message id)."""
        m = self._s.marks
        sql = (
            "SELECT id, content_key, sha256, message_id FROM messages "
            f"WHERE content_key IN ({m(len(keys))})"
        )
        params: list[str] = list(keys)
        if message_ids:
            sql += f" OR message_id IN ({m(len(message_ids))})"
            params.extend(message_ids)
        self._cursor.execute(sql, params)
        return [tuple(r) for r in self._cursor.fetchall()]

    def insert_raw(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        names = ("sha256", "size", "data", "stored_at")
        table: Table = RawMessage.__table__  # type: ignore[assignment]
        self._cursor.executemany(
            f"INSERT INTO raw_messages ({', '.join(names)}) VALUES ({self._s.marks(len(names))}) "
            "ON CONFLICT (sha256) DO NOTHING",
            self._s._values(table, names, rows),
        )

    def insert_messages(self, rows: Sequence[Row]) -> list[int]:
        """Insert in order; the new ids in the same order."""
        if not rows:
            return []
        names = tuple(rows[0])
        table: Table = Message.__table__  # type: ignore[assignment]
        sql = (
            f"INSERT INTO messages ({', '.join(names)}) VALUES ({self._s.marks(len(names))}) "
            "RETURNING id"
        )
        ids = []
        for values in self._s._values(table, names, rows):
            self._cursor.execute(sql, values)
            returned = self._cursor.fetchone()  # RETURNING gives one row per insert
            assert returned is not None
            ids.append(int(returned[0]))
        return ids


def _same(value: Any) -> Any:
    return value


def _begin_immediate(cursor: Any) -> None:
    """Take SQLite's write lock, asking again every 0.2-2 ms up to the busy timeout.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25… up to 100 ms between tries:
    a lock freed in the middle of a sleep stays unused until it ends. The worker frees it
    for us between messages (gateway/write_gate.py) and waits for our commit, so the
    sooner we look, the sooner both go on (with the worker on, 8 SMTP clients: 257 → 317
    msg/s). The connection's own busy timeout still bounds the wait.
    """
    timeout_ms = int(cursor.execute("PRAGMA busy_timeout").fetchone()[0])
    cursor.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + timeout_ms / 1000
        pause = LOCK_POLL_FIRST
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 1.5, LOCK_POLL_MAX)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
