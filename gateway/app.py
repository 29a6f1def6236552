"""Composition root: everything is built here from Settings and passed in; nothing at import time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from threading import Event

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway import db
from gateway.acceptor import AcceptProcess
from gateway.context import Deps
from gateway.inbox import Acceptor, Inbox
from gateway.models import utcnow
from gateway.outbound import Deliverer, Identity, MaildirTransport, Transport
from gateway.parties import Directory, load_directory
from gateway.prepare import Preparer
from gateway.rawstore import RawStore, make_store
from gateway.render import Renderer
from gateway.settings import Settings, SettingsError, secret
from gateway.transports import SmtpTransport
from gateway.worker import Worker
from gateway.write_gate import WriteGate
from parsers.analysis import AnalysisOptions


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: RawStore
    directory: Directory
    renderer: Renderer
    identity: Identity
    analysis_options: AnalysisOptions
    inbox: Acceptor
    worker: Worker
    preparer: Preparer
    deliverer: Deliverer
    work_ready: Event
    mail_ready: Event
    make_deps: Callable[[Session], Deps]
    write_gate: WriteGate | None = None  # SQLite only: accepts before the worker's writes
    acceptor: AcceptProcess | None = None

    def accept_in_child_process(self) -> None:
        """Bulk and long-running ingress (`serve`, `poll`) commits in a process of its own,
        so protocol work here never waits for the GIL behind a commit (gateway/acceptor.py)."""
        if self.acceptor is None:
            self.acceptor = AcceptProcess(
                self.settings, self.store, on_accept=self.work_ready.set, gate=self.write_gate
            ).start()
            self.inbox = self.acceptor

    def close(self) -> None:
        self.preparer.close()
        if self.acceptor is not None:
            self.acceptor.close()
            self.acceptor = None
        self.engine.dispose()


def build(settings: Settings, *, migrate: bool = True) -> App:
    engine = db.make_engine(
        settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    try:
        if migrate:
            db.upgrade(engine)  # its connection is the first to pass the durability check
    except db.NotDurable as exc:
        engine.dispose()
        raise SettingsError(f"{settings.source}: [database] url: {exc}") from None
    sessions = db.session_factory(engine)
    directory = load_directory(Path(settings.parties.file))
    store = make_store(settings.storage)
    work_ready, mail_ready = Event(), Event()
    write_gate = WriteGate() if engine.dialect.name == "sqlite" else None
    identity = Identity(
        mail_from=settings.outbound.from_address,
        from_name=settings.outbound.from_name,
        message_id_domain=settings.message_id_domain,
        loop_id=settings.gateway.installation_id,
        reply_to=settings.gateway.mailboxes[0],
        staff_mailbox=settings.gateway.staff_mailbox,
        max_automatic_per_recipient_per_hour=settings.outbound.max_automatic_per_recipient_per_hour,
    )
    analysis_options = AnalysisOptions(
        known_mpids=directory.mpids,
        reference_prefix=settings.gateway.reference_prefix,
        own_domains=frozenset({settings.message_id_domain}),
    )
    renderer = Renderer(Path(settings.templates.dir))
    preparer = Preparer(analysis_options, settings.worker.prepare_processes)

    def make_deps(session: Session) -> Deps:
        return Deps(
            session=session,
            settings=settings,
            directory=directory,
            renderer=renderer,
            identity=identity,
            analysis_options=analysis_options,
            now=utcnow(),
            store=store,
        )

    return App(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=store,
        directory=directory,
        renderer=renderer,
        identity=identity,
        analysis_options=analysis_options,
        inbox=Inbox(engine, store, on_accept=work_ready.set),
        worker=Worker(
            sessions,
            store,
            make_deps,
            batch_size=settings.worker.batch_size,
            after_commit=mail_ready.set,
            preparer=preparer,
            gate=write_gate,
        ),
        preparer=preparer,
        deliverer=Deliverer(
            sessions,
            make_transport(settings),
            retry_for=timedelta(hours=settings.outbound.retry_for_hours),
            # A claimed row waits for at most one SMTP transaction before its own, each
            # bounded at 3 x timeout: 7 x timeout means only a worker that died loses it.
            lease=timedelta(seconds=7 * settings.outbound.timeout_seconds),
            renderer=renderer,
            identity=identity,
        ),
        work_ready=work_ready,
        mail_ready=mail_ready,
        make_deps=make_deps,
        write_gate=write_gate,
    )


def make_transport(settings: Settings) -> Transport:
    out = settings.outbound
    if out.transport == "maildir":
        return MaildirTransport(Path(out.maildir))
    password = secret(settings.source, out.password_env, out.password_file, "[outbound] password")
    return SmtpTransport(
        out.relay_host,
        out.relay_port,
        security=out.security,
        verify=out.verify_certificates,
        user=out.user,
        password=password,
        timeout=out.timeout_seconds,
    )
