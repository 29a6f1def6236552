"""Preparing batches in a child process: the same facts as inline, and a child that dies
or hangs costs time, never a message."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from gateway import app as app_module
from gateway.inbox import Envelope
from gateway.models import Case, Message
from gateway.prepare import Item, Preparer, prepare
from gateway.settings import Settings
from gateway.worker import PRELOAD_BYTES
from parsers.analysis import AnalysisOptions
from tests.parsers.fixtures_mail import office365_ndr, outlook_oof_english
from tests.support import alive, wait_until

OPTIONS = AnalysisOptions(reference_prefix="CPSD", own_domains=frozenset({"elexon.example"}))


def _messages(make_mail: Callable[..., bytes]) -> list[bytes]:
    return [
        make_mail(),
        make_mail(subject="Re: [CPSD-000001] more MPANs", body="MPAN 1200023305967\n"),
        office365_ndr(),
        outlook_oof_english(),
        b"From: a@b.example\r\n" + b"X-Filler: y\r\n" * 5000 + b"\r\nover the header limit\r\n",
    ]


@pytest.fixture
def preparer() -> Iterator[Preparer]:
    pool = Preparer(OPTIONS, 1, timeout=5)
    yield pool
    pool.close()


def test_a_child_process_finds_exactly_what_inline_preparation_finds(
    preparer: Preparer, make_mail: Callable[..., bytes]
) -> None:
    raws = _messages(make_mail)
    items = [Item(i, raw, "ops@brightenergy.example") for i, raw in enumerate(raws)]
    pooled = preparer.start(items).results()
    assert sorted(pooled) == list(range(len(raws)))
    for item in items:
        alone = prepare(item.raw, OPTIONS, item.envelope_from)
        there = pooled[item.row_id]
        assert there.parsed.problems == alone.parsed.problems
        if alone.analysis is None:
            assert there.analysis is None and there.parsed.message is None
            continue
        assert there.analysis is not None
        assert there.analysis.to_json() == alone.analysis.to_json()
        assert there.parsed.message is not None and alone.parsed.message is not None
        assert there.parsed.message.as_bytes() == alone.parsed.message.as_bytes()
    assert pooled[0].analysis is not None and pooled[0].analysis.mpans
    assert pooled[2].analysis is not None and pooled[2].analysis.kind == "bounce"


def test_a_child_that_dies_costs_its_batch_the_pool_not_the_messages(
    preparer: Preparer, make_mail: Callable[..., bytes]
) -> None:
    preparer.warm()
    (child,) = preparer.pids
    items = [Item(1, make_mail(), None)]
    os.kill(child, signal.SIGKILL)
    assert preparer.start(items).results() == {}  # the pool is broken: none prepared
    again = preparer.start(items).results()  # a new pool
    assert again[1].analysis is not None and again[1].analysis.mpans
    assert preparer.pids and preparer.pids != [child]


def test_a_child_that_hangs_is_ended_after_the_timeout(
    preparer: Preparer, make_mail: Callable[..., bytes]
) -> None:
    preparer.warm()
    (child,) = preparer.pids
    os.kill(child, signal.SIGSTOP)  # alive, never answering
    started = time.monotonic()
    assert preparer.start([Item(1, make_mail(), None)]).results() == {}
    assert preparer.timeout <= time.monotonic() - started < preparer.timeout + 5
    assert wait_until(lambda: not alive(child))
    assert preparer.start([Item(1, make_mail(), None)]).results()[1].analysis is not None


@pytest.fixture
def pooled_app(make_settings: Callable[..., Settings]) -> Iterator[app_module.App]:
    built = app_module.build(make_settings("prepare_processes = 1"))
    built.preparer.timeout = 5
    yield built
    built.close()


@pytest.fixture
def no_parsing_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's own parse and analysis fail: only the child may have done them."""

    def not_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed in the worker's own process")

    monkeypatch.setattr("gateway.steps.extract.parse_bounded", not_here)
    monkeypatch.setattr("gateway.steps.extract.analyse", not_here)


@pytest.mark.usefixtures("no_parsing_here")
def test_the_worker_uses_what_the_child_prepared(
    pooled_app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    """Cases are raised from the child's analysis: this process never parses them."""
    for n in range(25):  # three batches: each prepared while the one before is written
        raw = make_mail(message_id=f"<p{n}@brightenergy.example>", subject=f"Case {n}")
        pooled_app.inbox.accept(raw, Envelope(), "test")
    done = pooled_app.worker.drain()
    assert [d.outcome for d in done] == ["case_created"] * 25
    with pooled_app.sessions() as session:
        facts = session.scalars(select(Case.facts)).all()
        assert all(f is not None and f["mpans"] == ["1052601815905"] for f in facts)


def test_when_the_child_dies_the_worker_parses_the_batch_itself(
    pooled_app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    pooled_app.preparer.warm()
    for pid in pooled_app.preparer.pids:
        os.kill(pid, signal.SIGKILL)
    row_id = pooled_app.inbox.accept(make_mail(), Envelope(), "test").message_row_id
    (done,) = pooled_app.worker.drain()
    assert done.outcome == "case_created"
    with pooled_app.sessions() as session:
        row = session.get(Message, row_id)
        assert row is not None and row.status == "processed" and row.interruptions == 0


def test_a_batch_the_child_raises_on_leaves_the_pool_running(
    preparer: Preparer, make_mail: Callable[..., bytes]
) -> None:
    """A batch the child raises on (here: no bytes at all, which nothing else would
    send) costs that batch only; the same child prepares the next one."""
    preparer.warm()
    (child,) = preparer.pids
    broken = [Item(1, None, None)]  # type: ignore[arg-type]
    assert preparer.start(broken).results() == {}
    again = preparer.start([Item(2, make_mail(), None)]).results()
    assert again[2].analysis is not None
    assert preparer.pids == [child]


def _large(make_mail: Callable[..., bytes]) -> bytes:
    raw = make_mail(
        message_id="<big@brightenergy.example>",
        body="Summary: DIP log attached inline\n" + "IF-041 rejected SP101\n" * 60_000,
    )
    assert len(raw) > PRELOAD_BYTES
    return raw


@pytest.mark.usefixtures("no_parsing_here")
def test_a_large_message_is_prepared_by_the_child_too(
    pooled_app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    """Not read ahead with its batch, but still parsed in the child, not in this process."""
    pooled_app.inbox.accept(make_mail(), Envelope(), "test")
    pooled_app.inbox.accept(_large(make_mail), Envelope(), "test")
    assert [d.outcome for d in pooled_app.worker.drain()] == ["case_created"] * 2


def test_a_large_message_from_the_command_line_starts_no_pool(
    pooled_app: app_module.App, make_mail: Callable[..., bytes]
) -> None:
    row_id = pooled_app.inbox.accept(_large(make_mail), Envelope(), "test").message_row_id
    (done,) = pooled_app.worker.process([row_id])  # as `ingest` and `reprocess` call it
    assert done.outcome == "case_created"
    assert pooled_app.preparer.pids == []
