"""`ingest` runs each message through the worker and says plainly what became of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from gateway.app import App
from gateway.cli.mail import _process
from gateway.inbox import Envelope
from gateway.models import Message, utcnow


def test_stored_but_not_processed_here_says_why(
    locked: tuple[App, sqlite3.Connection], make_mail: Callable[..., bytes]
) -> None:
    app, blocker = locked
    theirs, ours = (
        app.inbox.accept(
            make_mail(message_id=f"<i{n}@brightenergy.example>"), Envelope(), "test"
        ).message_row_id
        for n in (1, 2)
    )
    with app.sessions.begin() as session:  # `serve` claimed this one a moment ago
        session.execute(
            update(Message)
            .where(Message.id == theirs)
            .values(claimed_at=utcnow() - timedelta(seconds=5), claimed_by="gw2.example:7:ab")
        )
    result, ok = _process(app, theirs)
    assert (result["outcome"], result["reason"], ok) == (
        "received",
        "stored; another worker is processing it",
        True,
    )
    blocker.execute("BEGIN EXCLUSIVE")  # and now the database is out of reach
    result, ok = _process(app, ours)
    blocker.execute("ROLLBACK")
    assert result["outcome"] == "received" and not ok
    assert result["reason"].startswith("stored; not processed yet, the database failed")
