"""Parse and analyse messages before the worker's write transaction, on another core.

Parsing and analysis are pure (parsers/ knows no database) and are most of a message's
CPU. Done inside the batch's transaction they held SQLite's write lock, so accepts
waited behind a parser; done in the worker's thread they shared one core with the
database work. Here they run first: in ``processes`` child processes when configured,
one batch ahead of the one being written (the worker hands over the next batch before
it writes this one), else inline before the transaction opens.

Nothing here is needed for correctness. A child that dies, hangs past ``timeout`` or
raises leaves its batch unprepared; the pipeline's own extract steps then parse and
analyse those messages as before, so a poison message meets the worker's interruption
count (reliability.md I2) exactly as it would without a pool. A pool whose child died
or hung is replaced for the next batch; one that only raised is kept.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from parsers.analysis import Analysis, AnalysisOptions, analyse
from parsers.mime import ParsedMessage, parse_bounded

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 60.0  # a batch; each message's parse and analysis is bounded far below


@dataclass(frozen=True)
class Prepared:
    parsed: ParsedMessage
    analysis: Analysis | None  # None when the parse refused the message


@dataclass(frozen=True)
class Item:
    row_id: int
    raw: bytes
    envelope_from: str | None


def prepare(raw: bytes, options: AnalysisOptions, envelope_from: str | None) -> Prepared:
    parsed = parse_bounded(raw, options.limits)
    if parsed.message is None:
        return Prepared(parsed, None)
    return Prepared(parsed, analyse(raw, options, envelope_from=envelope_from, parsed=parsed))


class Pending:
    """A batch being prepared; ``results`` waits for it (at most the preparer's timeout)."""

    def __init__(
        self,
        preparer: Preparer,
        items: Sequence[Item],
        job: Future[list[Prepared]] | None,
    ) -> None:
        self._preparer = preparer
        self._items = items
        self._job = job
        self._results: dict[int, Prepared] | None = None

    def results(self) -> dict[int, Prepared]:
        """Row id → prepared message; a message missing here is prepared by the pipeline."""
        if self._results is None:
            self._results = self._collect()
        return self._results

    def _collect(self) -> dict[int, Prepared]:
        if self._job is None:
            options = self._preparer.options
            return {i.row_id: prepare(i.raw, options, i.envelope_from) for i in self._items}
        try:
            prepared = self._job.result(self._preparer.timeout)
        except Exception as exc:  # a child died, hung or raised: the pipeline does it
            log.warning(
                "preparing %d messages in a child process failed (%s: %s); the worker "
                "parses them itself",
                len(self._items),
                type(exc).__name__,
                exc,
            )
            if isinstance(exc, BrokenProcessPool | TimeoutError):
                self._preparer.restart()  # else the pool is sound: one batch went wrong
            return {}
        return {item.row_id: done for item, done in zip(self._items, prepared, strict=True)}


class Preparer:
    """Prepares batches in ``processes`` child processes (0: inline, when asked for)."""

    def __init__(
        self, options: AnalysisOptions, processes: int, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        self.options = options
        self.timeout = timeout
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def start(self, items: Sequence[Item], *, inline: bool = False) -> Pending:
        """Begin preparing ``items``; inline, the work is done when results are asked for
        (``inline`` for one message from the command line: no pool started for it)."""
        if self._processes <= 0 or inline or not items:
            return Pending(self, items, None)
        payload = [(i.raw, i.envelope_from) for i in items]
        try:
            job = self._started().submit(_prepare_many, payload)
        except Exception as exc:  # no processes to be had (limits, memory): work inline
            log.warning("cannot start preparing processes (%s); working inline", exc)
            self.close()
            return Pending(self, items, None)
        return Pending(self, items, job)

    def warm(self) -> None:
        """Start the processes now (``serve`` at start), not with the first mail, and
        wait until one has imported the parsers and answers."""
        if self._processes > 0:
            try:
                self._started().submit(_prepare_many, []).result(self.timeout)
            except Exception as exc:
                log.warning("cannot start preparing processes (%s); will retry", exc)
                self.close()

    @property
    def pids(self) -> list[int]:
        """The child processes' ids (for operators and tests)."""
        return [p.pid for p in _processes(self._pool) if p.pid is not None]

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the gateway has threads (SMTP, IMAP, delivery) whose locks
            # a forked child would inherit held.
            self._pool = ProcessPoolExecutor(
                self._processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(self.options,),
            )
        return self._pool

    def restart(self) -> None:
        """Drop a pool that failed or hung; the next batch starts a new one."""
        self.close(kill=True)  # a hung child would otherwise keep its core for ever

    def close(self, *, kill: bool = False) -> None:
        """End the children now: a busy one is not waited for (SIGTERM, or SIGKILL)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            children = _processes(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            for child in children:  # each a no-op once the child is reaped
                if kill:
                    child.kill()
                else:
                    child.terminate()


def _processes(pool: ProcessPoolExecutor | None) -> list[BaseProcess]:
    # Python 3.14 has ProcessPoolExecutor.kill_workers(); 3.11 only this private mapping.
    return list((getattr(pool, "_processes", None) or {}).values())


_options = AnalysisOptions()  # a child's copy, set once by _init


def _init(options: AnalysisOptions) -> None:
    global _options
    _options = options
    # Ctrl-C in a terminal reaches the whole process group: the parent shuts down and
    # ends its children, which need no traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_many(payload: list[tuple[bytes, str | None]]) -> list[Prepared]:
    return [prepare(raw, _options, envelope_from) for raw, envelope_from in payload]
