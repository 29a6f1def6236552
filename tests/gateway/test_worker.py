"""The worker: a message's own failure is recorded on it, the database's never is, and a
message that keeps killing its worker is set aside."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

import gateway.prepare
import gateway.steps.extract
from gateway import app as app_module
from gateway import pipeline
from gateway.context import Deps, MessageContext
from gateway.db import DatabaseUnavailable
from gateway.inbox import Envelope
from gateway.models import Case, Event, Message, Outbox, utcnow
from gateway.settings import Settings
from gateway.worker import CLAIM_STALE, MAX_INTERRUPTIONS, PRELOAD_BYTES, reset_for_reprocess


@pytest.fixture
def app(settings: Settings) -> Iterator[app_module.App]:
    built = app_module.build(settings)
    yield built
    built.close()


def _accepted(app: app_module.App, make_mail: Callable[..., bytes], n: int) -> int:
    raw = make_mail(message_id=f"<c{n}@brightenergy.example>", subject=f"c{n}")
    return app.inbox.accept(raw, Envelope(), "test").message_row_id


def test_a_locked_database_leaves_the_batch_waiting_not_failed(
    locked: tuple[app_module.App, sqlite3.Connection], make_mail: Callable[..., bytes]
) -> None:
    app, blocker = locked
    ids = [_accepted(app, make_mail, n) for n in range(3)]
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past the timeout
    with pytest.raises(DatabaseUnavailable, match="database is locked"):
        app.worker.process(ids)
    blocker.execute("ROLLBACK")
    with app.sessions() as session:
        statuses = session.scalars(select(Message.status).where(Message.id.in_(ids))).all()
    assert statuses == ["received"] * 3  # waiting, not failed for the database's fault
    assert [d.outcome for d in app.worker.process(ids)] == ["case_created"] * 3


def test_a_message_that_fails_is_marked_failed_alone_and_its_batch_goes_through(
    app: app_module.App, make_mail: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [_accepted(app, make_mail, n) for n in range(3)]
    real_run = pipeline.run

    def fails_on_c1(ctx: MessageContext, deps: Deps) -> None:
        real_run(ctx, deps)  # its case raised and acknowledgement queued, then...
        if ctx.row.subject == "c1":
            raise RuntimeError("template store unreachable")

    monkeypatch.setattr(pipeline, "run", fails_on_c1)
    done = app.worker.process(ids)
    assert [(d.message_row_id, d.outcome) for d in done] == [
        (ids[0], "case_created"),
        (ids[1], "failed"),
        (ids[2], "case_created"),
    ]
    assert done[1].reason == "RuntimeError: template store unreachable"
    with app.sessions() as session:
        subjects = session.scalars(select(Case.subject).order_by(Case.id)).all()
        failed = session.get(Message, ids[1])
        assert failed is not None and failed.case_id is None and failed.attempts == 1
        kept = app.store.get(session, failed.sha256)  # for reprocess
        mails = dict(
            session.execute(
                select(Outbox.cause_message_id, func.count()).group_by(Outbox.cause_message_id)
            ).all()
        )
    assert hashlib.sha256(kept).hexdigest() == failed.sha256
    assert subjects == ["c0", "c2"]  # nothing of c1's half-done work was kept
    assert ids[1] not in mails and mails[ids[0]] == mails[ids[2]] > 0


def _left_by_a_dead_worker(
    app: app_module.App,
    row_id: int,
    *,
    ago: timedelta,
    interruptions: int = 0,
    by: str = "other-host.example:4242:0a1b2c3d",
) -> None:
    """What a worker killed mid-batch leaves: its committed claim, nothing of its work."""
    with app.sessions.begin() as session:
        session.execute(
            update(Message)
            .where(Message.id == row_id)
            .values(claimed_at=utcnow() - ago, claimed_by=by, interruptions=interruptions)
        )


def _a_finished_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    "claimer",
    [
        lambda: f"{socket.gethostname()}:{_a_finished_pid()}:0a1b2c3d",  # a process now gone
        lambda: f"{socket.gethostname()}:{os.getpid()}:0a1b2c3d",  # this pid's earlier life
    ],
    ids=["dead-pid", "restarted-pid"],
)
def test_a_claim_left_on_this_host_by_a_process_now_gone_is_taken_up_at_once(
    app: app_module.App, make_mail: Callable[..., bytes], claimer: Callable[[], str]
) -> None:
    # A kill -9 and a restart: the batch in flight is taken up at once, not a minute later.
    row_id = _accepted(app, make_mail, 1)
    _left_by_a_dead_worker(app, row_id, ago=timedelta(seconds=1), by=claimer())
    (done,) = app.worker.drain()
    assert done.outcome == "case_created"


def test_a_message_whose_worker_died_is_processed_and_the_interruption_counted(
    app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    row_id = _accepted(app, make_mail, 1)
    _left_by_a_dead_worker(app, row_id, ago=CLAIM_STALE + timedelta(seconds=1))
    (done,) = app.worker.drain()
    assert done.outcome == "case_created"
    with app.sessions() as session:
        row = session.get(Message, row_id)
        assert row is not None and row.interruptions == 1 and row.claimed_at is None


def test_a_fresh_claim_is_another_workers_and_is_left_alone(
    app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    theirs, ours = _accepted(app, make_mail, 1), _accepted(app, make_mail, 2)
    _left_by_a_dead_worker(app, theirs, ago=timedelta(seconds=5))
    assert [d.message_row_id for d in app.worker.drain()] == [ours]
    assert app.worker.process([theirs]) == []


def test_a_message_that_keeps_killing_its_worker_is_set_aside_for_a_person(
    app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    row_id = _accepted(app, make_mail, 1)
    _left_by_a_dead_worker(
        app, row_id, ago=timedelta(minutes=5), interruptions=MAX_INTERRUPTIONS - 1
    )
    (done,) = app.worker.drain()
    assert done.outcome == "quarantined"
    assert done.reason is not None
    assert done.reason.startswith(f"processing was interrupted {MAX_INTERRUPTIONS} times")
    with app.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0
        reset_for_reprocess(session, row_id, release=True)  # the cause was found
    (released,) = app.worker.process([row_id])
    assert released.outcome == "case_created"


def test_after_a_database_failure_its_own_claims_are_taken_up_again_not_counted(
    locked: tuple[app_module.App, sqlite3.Connection], make_mail: Callable[..., bytes]
) -> None:
    app, blocker = locked
    row_id = _accepted(app, make_mail, 1)
    claimed, _ = app.worker._claim([row_id])  # claimed, then the database goes away
    assert claimed == [row_id]
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(DatabaseUnavailable):
        app.worker.process([row_id])
    blocker.execute("ROLLBACK")
    (done,) = app.worker.drain()  # at once, not a minute later
    assert done.outcome == "case_created"
    with app.sessions() as session:
        row = session.get(Message, row_id)
        assert row is not None and row.interruptions == 0


def test_an_accept_waiting_for_the_lock_ends_the_batch_after_the_message_in_hand(
    app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    # SQLite has one writer: a message waiting to be stored goes before the backlog.
    assert app.write_gate is not None
    ids = [_accepted(app, make_mail, n) for n in range(3)]
    with app.write_gate.accepting():  # an SMTP message is on its way to the database
        done = app.worker.process(ids)
    assert [d.message_row_id for d in done] == ids[:1]  # the one in hand is finished
    with app.sessions() as session:
        statuses = session.scalars(
            select(Message.status).where(Message.id.in_(ids)).order_by(Message.id)
        ).all()
    assert statuses == ["processed", "received", "received"]
    # The rest are still ours, and the next pass takes them up.
    assert [d.message_row_id for d in app.worker.drain()] == ids[1:]


def test_without_accepts_waiting_a_batch_runs_whole(
    app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    ids = [_accepted(app, make_mail, n) for n in range(3)]
    assert [d.message_row_id for d in app.worker.process(ids)] == ids


def test_draining_a_backlog_takes_up_what_it_left_for_an_accept_within_two_batches(
    make_settings: Callable[..., Settings],
    make_mail: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next batch is already being prepared when an accept cuts one short: the
    messages left are the oldest again for the batch after it, not after the backlog."""
    built = app_module.build(make_settings("batch_size = 2"))
    try:
        ids = [_accepted(built, make_mail, n) for n in range(6)]
        assert built.write_gate is not None
        answers = iter([True])  # an accept arrives once, during the first batch
        monkeypatch.setattr(built.write_gate, "busy", lambda: next(answers, False))
        parsed: list[bytes] = []
        real = gateway.prepare.prepare
        monkeypatch.setattr(
            gateway.prepare, "prepare", lambda raw, *a: parsed.append(raw) or real(raw, *a)
        )
        order = [d.message_row_id for d in built.worker.drain()]
    finally:
        built.close()
    assert sorted(order) == ids
    assert order == [ids[0], ids[2], ids[3], ids[1], ids[4], ids[5]]
    assert len(parsed) == len(set(parsed)) == 6  # the one left over was not parsed again


def test_under_a_flood_of_accepts_each_message_is_still_parsed_once(
    make_settings: Callable[..., Settings],
    make_mail: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every batch cut short after its first message: the rest keep their preparation."""
    built = app_module.build(make_settings("batch_size = 5"))
    try:
        ids = [_accepted(built, make_mail, n) for n in range(12)]
        assert built.write_gate is not None
        monkeypatch.setattr(built.write_gate, "busy", lambda: True)
        parsed: list[bytes] = []
        real = gateway.prepare.prepare
        monkeypatch.setattr(
            gateway.prepare, "prepare", lambda raw, *a: parsed.append(raw) or real(raw, *a)
        )
        done = built.worker.drain()
    finally:
        built.close()
    assert sorted(d.message_row_id for d in done) == ids
    assert len(parsed) == len(set(parsed)) == 12


_DIE_WHILE_PARSING = """
import os, sys
import gateway.prepare, gateway.steps.extract
from gateway import app
from pathlib import Path
from gateway.settings import load

def die(*args, **kwargs):
    os._exit(9)  # as a parser that exhausts memory is killed

gateway.prepare.parse_bounded = die
gateway.steps.extract.parse_bounded = die
app.build(load(Path(sys.argv[1]))).worker.drain()
"""


def test_a_worker_killed_while_parsing_has_committed_its_claim_first(
    settings: Settings, make_mail: Callable[..., bytes]
) -> None:
    """Parsing happens outside the batch's transaction now, but never before the claim:
    the kill is counted as an interruption, so a poison message cannot loop for ever."""
    built = app_module.build(settings)
    try:
        row_id = _accepted(built, make_mail, 1)
        died = subprocess.run(
            [sys.executable, "-c", _DIE_WHILE_PARSING, settings.source],
            capture_output=True,
            timeout=60,
        )
        assert died.returncode == 9, died.stderr.decode()
        with built.sessions() as session:
            row = session.get(Message, row_id)
            assert row is not None and row.status == "received"
            assert row.claimed_by is not None  # committed before the parse began
        (done,) = built.worker.drain()
        assert done.outcome == "case_created"
        with built.sessions() as session:
            row = session.get(Message, row_id)
            assert row is not None and row.interruptions == 1
    finally:
        built.close()


def test_a_large_message_is_parsed_alone_with_no_write_lock_held(
    app: app_module.App, make_mail: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over PRELOAD_BYTES a message is not read ahead with its batch; it is still parsed
    outside every write transaction, in its turn, so the case it raises comes first."""
    large = make_mail(
        message_id="<big@brightenergy.example>",
        subject="Evidence for the IF-041 rejections",
        body="Summary: the DIP log of the rejections\n" + "rejected IF-041 SP101\n" * 60_000,
    )
    assert len(large) > PRELOAD_BYTES
    first = _accepted(app, make_mail, 1)
    big = app.inbox.accept(large, Envelope(), "test").message_row_id
    reply = make_mail(
        message_id="<r1@brightenergy.example>",
        subject="Re: Evidence for the IF-041 rejections",
        headers={"In-Reply-To": "<big@brightenergy.example>"},
    )
    last = app.inbox.accept(reply, Envelope(), "test").message_row_id
    database = app.settings.database.url.split("///", 1)[1]
    lock_free: dict[int, bool] = {}

    def probing(parse: Callable[..., object]) -> Callable[..., object]:
        def probe(raw: bytes, *args: object) -> object:
            other = sqlite3.connect(database, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # fails while anyone holds the write lock
                other.execute("ROLLBACK")
                lock_free[len(raw)] = True
            except sqlite3.OperationalError:
                lock_free[len(raw)] = False
            finally:
                other.close()
            return parse(raw, *args)

        return probe

    monkeypatch.setattr(gateway.prepare, "parse_bounded", probing(gateway.prepare.parse_bounded))
    monkeypatch.setattr(
        gateway.steps.extract, "parse_bounded", probing(gateway.steps.extract.parse_bounded)
    )
    done = app.worker.drain()
    assert [d.message_row_id for d in done] == [first, big, last]
    assert [d.outcome for d in done] == ["case_created", "case_created", "case_updated"]
    assert done[2].reference == done[1].reference  # the reply found the large one's case
    assert lock_free[len(large)] is True
    assert all(lock_free.values()) and len(lock_free) == 3


def test_a_case_raised_in_a_batch_is_found_by_the_messages_after_it_in_the_same_batch(
    app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    """A new case is written with the batch, not when raised: the next message's look-ups
    must still find it (by reference and by thread), and every row must name it."""
    first = _accepted(app, make_mail, 1)
    by_reference = app.inbox.accept(
        make_mail(message_id="<r1@brightenergy.example>", subject="Re: [CPSD-000001] c1"),
        Envelope(),
        "test",
    ).message_row_id
    by_thread = app.inbox.accept(
        make_mail(
            message_id="<r2@brightenergy.example>",
            subject="more on the rejections",
            headers={"In-Reply-To": "<c1@brightenergy.example>"},
        ),
        Envelope(),
        "test",
    ).message_row_id
    done = app.worker.process([first, by_reference, by_thread])  # one transaction
    assert [(d.outcome, d.reference) for d in done] == [
        ("case_created", "CPSD-000001"),
        ("case_updated", "CPSD-000001"),
        ("case_updated", "CPSD-000001"),
    ]
    with app.sessions() as session:
        case_id = session.scalars(select(Case.id)).one()
        linked = session.scalars(select(Message.case_id).order_by(Message.id)).all()
        assert linked == [case_id] * 3
        queued = session.scalars(select(Outbox.case_id)).all()
        assert queued and set(queued) == {case_id}
        kinds = session.scalars(
            select(Event.kind).where(Event.case_id == case_id).order_by(Event.id)
        ).all()
        assert kinds[:2] == ["message_received", "case_raised"]
        assert kinds.count("message_received") == 3
