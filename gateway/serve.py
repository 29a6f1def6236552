"""`serve`: SMTP listener, IMAP pollers, worker and outbound delivery until SIGTERM.

SIGTERM stops listening at once, lets SMTP transactions already inside DATA finish
durably (bounded wait), then lets the worker finish its batch and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import uvloop

from gateway.acceptor import AcceptChannel
from gateway.app import App
from gateway.db import DatabaseUnavailable, database_unavailable
from gateway.ingress import free_space
from gateway.ingress.imap import start_pollers
from gateway.ingress.smtp import Handler, Storer, smtp_factory

log = logging.getLogger(__name__)
DRAIN_SECONDS = 30.0
UNAVAILABLE_WAIT_SECONDS = 0.5  # the first wait while the database is down
UNAVAILABLE_MAX_SECONDS = 30.0


def serve(app: App, tls_context: ssl.SSLContext | None = None) -> int:
    """``tls_context``: the SMTP listener's, built before start-up (gateway/ingress/smtp_tls.py)."""
    # uvloop's event loop and transports cost ~20 % less CPU per SMTP session than
    # asyncio's own (BENCHMARKS.md); aiosmtpd runs on any asyncio loop.
    return uvloop.run(_serve(app, tls_context))


async def _serve(app: App, tls_context: ssl.SSLContext | None) -> int:
    stopping = threading.Event()
    if removed := app.store.tidy():
        log.warning("raw store: removed %d temp files left by an earlier crash", removed)
    app.accept_in_child_process()
    threads = [
        threading.Thread(target=_work_loop, args=(app, stopping), name="worker", daemon=True),
        threading.Thread(target=_delivery_loop, args=(app, stopping), name="outbound", daemon=True),
    ]
    if app.settings.worker.enabled:
        for thread in threads:
            thread.start()
    # IMAP: one poller thread per [[imap]] mailbox, ended by the same `stopping` event.
    imap_threads = start_pollers(app, stopping)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server = None
    handler = None
    channel = None
    executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="accept")
    if app.settings.smtp.enabled:
        host, _, port = app.settings.smtp.listen.rpartition(":")
        assert app.acceptor is not None
        channel = AcceptChannel(app.acceptor)
        handler = Handler(
            Storer(app.inbox, channel, executor),
            app.settings.gateway.mailboxes,
            max_recipients=app.settings.smtp.max_recipients,
            free_space=free_space.of(app.settings),
            max_message_bytes=app.settings.smtp.max_message_bytes,
        )
        factory = smtp_factory(
            handler,
            hostname=app.settings.smtp.hostname or app.settings.message_id_domain,
            max_bytes=app.settings.smtp.max_message_bytes,
            timeout=app.settings.smtp.timeout_seconds,
            max_sessions=app.settings.smtp.max_sessions,
            tls_context=tls_context,
            require_tls=app.settings.smtp.require_tls,
        )
        server = await loop.create_server(factory, host=host.strip("[]"), port=int(port))
        log.info("SMTP listening on %s", app.settings.smtp.listen)
    print(f"cpsd-gateway serving (SMTP {app.settings.smtp.listen})", flush=True)

    await stop.wait()
    log.info("stopping: no new connections; finishing messages in flight")
    if server is not None:
        server.close()
    # F20: idle sessions hear 421 now; a message coming in or waiting for its commit is
    # finished (its 250 means stored), then that session hears 421 too.
    deadline = loop.time() + DRAIN_SECONDS
    while handler is not None and loop.time() < deadline:
        handler.hang_up_idle()
        if not handler.busy():
            break
        await asyncio.sleep(0.05)
    stopping.set()
    app.work_ready.set()
    app.mail_ready.set()
    for thread in [*threads, *imap_threads]:
        if thread.is_alive():
            await loop.run_in_executor(None, thread.join, DRAIN_SECONDS)
    executor.shutdown(wait=True)
    if channel is not None:
        channel.close()
    app.close()
    return 0


class _Outage:
    """How long to wait before the next pass while the database is down: 0.5 s, doubling
    to 30 s, so an outage of an hour is a few dozen log lines and reconnects, not
    thousands; back to normal at the first pass that works."""

    def __init__(self) -> None:
        self.failures = 0

    def wait_after(self, error: Exception) -> float:
        self.failures += 1
        wait = min(UNAVAILABLE_MAX_SECONDS, UNAVAILABLE_WAIT_SECONDS * 2 ** (self.failures - 1))
        log.warning("database unavailable (%d in a row), next try in %.1f s: %s",
                    self.failures, wait, error)  # fmt: skip
        return wait

    def over(self) -> None:
        """A pass worked: the next outage starts from the first wait again."""
        self.failures = 0


def _work_loop(app: App, stopping: threading.Event) -> None:
    idle = app.settings.worker.idle_seconds
    outage = _Outage()
    app.preparer.warm()  # the first mail should not wait for processes to start
    while not stopping.is_set():
        app.work_ready.clear()
        try:
            done = app.worker.drain()
        except DatabaseUnavailable as exc:  # the messages wait, unchanged, for the next pass
            app.work_ready.wait(max(idle, outage.wait_after(exc)))
            continue
        except Exception:
            log.exception("worker pass failed; retrying")
            done = []
        outage.over()
        if not done:
            app.work_ready.wait(idle)


def _delivery_loop(app: App, stopping: threading.Event) -> None:
    idle = app.settings.worker.idle_seconds
    outage = _Outage()
    while not stopping.is_set():
        app.mail_ready.clear()
        try:
            delivered = app.deliverer.deliver_due()
        except Exception as exc:
            if database_unavailable(exc):  # leases bring back whatever was mid-send
                app.mail_ready.wait(max(idle, outage.wait_after(exc)))
                continue
            log.exception("delivery pass failed; retrying")
            delivered = []
        outage.over()
        if not delivered:
            app.mail_ready.wait(idle)
