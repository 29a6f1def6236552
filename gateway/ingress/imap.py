"""IMAP ingress: read shared mailboxes (Microsoft 365 or any IMAP server) like SMTP, exactly once.

One ``MailboxPoller`` per ``[[imap]]`` mailbox. A pass over a folder:

1. SELECT, read UIDVALIDITY, compare it with ``mailbox_state`` (a change means the folder
   was recreated or restored: log a resync and start again from UID 1);
2. ``UID SEARCH UID last+1:*`` (``n:*`` always answers the highest UID, so filter);
3. ``RFC822.SIZE`` first, so an oversized message is never read into memory (F9);
4. per batch, ``BODY.PEEK[]`` (never ``BODY[]``/``RFC822``: they set ``\\Seen``, and a crash
   before the commit would then hide the mail from a person looking for unread mail, F10);
5. ``inbox.accept_many`` — the durable boundary, and its content-key dedupe is the safety
   net for every crash and resync below;
6. the pipeline runs (inline for ``poll --once``, the shared worker under ``serve``), so the
   poller knows whether a message was quarantined;
7. only then MOVE to the processed or quarantine folder (COPY + ``\\Deleted`` + UID EXPUNGE
   where the server lacks MOVE), and only after that is ``last_uid`` saved.

A crash between any two steps leaves the message in the folder; the next pass fetches it
again, accept calls it a duplicate, and it is moved. The sent folder (staff replying from
the shared mailbox in Outlook) is read but never moved: it is the staff's Sent Items.

Connections drop, tokens expire, servers restart: ``run`` reconnects with exponential
backoff and full jitter and logs every reconnect with its reason. One mailbox failing
never touches another (each runs in its own thread under ``serve``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import shlex
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.inbox import Accepted, Envelope, Incoming, content_key
from gateway.models import MailboxState, Message, utcnow
from gateway.settings import ImapSettings, SettingsError, secret

if TYPE_CHECKING:
    from gateway.app import App

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
# RFC 2177: servers may drop an IDLE after 30 minutes (Exchange Online: 29); renew well before.
IDLE_RENEW_SECONDS = 25 * 60
IDLE_CHECK_SECONDS = 1.0  # how often an IDLE looks at the stop event
SIZE_CAP_FACTOR = 2  # x [smtp] max_message_bytes: a memory guard, not a policy (see _cap)
TOKEN_COMMAND_TIMEOUT = 30.0
SHARED_WORKER_WAIT_SECONDS = 300.0
LARGE_BYTES = 256 * 1024  # fetched one at a time: a batch holds at most batch_size x this
CURSOR_SAVE_SECONDS = 1.0  # the inbox cursor only saves a search; dedupe is the guarantee
PROGRESS_THRESHOLD = 50  # more new messages than this in one folder: show progress
DELETED = b"\\Deleted"

Processing = Literal["inline", "shared", "none"]


class MailboxUnavailable(Exception):
    """The mailbox cannot be used now; the message is the reason, worded for an operator."""


class AuthenticationRejected(MailboxUnavailable):
    """The server refused our password or token: say so plainly, then retry with backoff."""


class Stopping(Exception):
    """The stop event was set in the middle of a pass; what is accepted stays accepted."""


@dataclass
class Tally:
    """What one pass did, per mailbox: the numbers `poll --once` prints."""

    imported: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed: int = 0

    def add(self, other: Tally) -> None:
        self.imported += other.imported
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.failed += other.failed

    @property
    def total(self) -> int:
        return self.imported + self.duplicates + self.quarantined + self.failed


@dataclass
class PassResult:
    mailbox: str
    tally: Tally = field(default_factory=Tally)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "imported": self.tally.imported,
            "duplicates": self.tally.duplicates,
            "quarantined": self.tally.quarantined,
            "failed": self.tally.failed,
            "error": self.error,
        }


class Progress(Protocol):
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, int], Progress]


class LogProgress:
    """Progress as plain log lines, for logs and pipes (a bar would be noise there)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self._last = 0.0
        log.info("%s: %d new messages", label, total)

    def update(self, n: int) -> None:
        """The first batch, then one line every 2 s, then the last: readable in any log."""
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= 2.0:
            self._last = now
            log.info("%s: %d/%d messages", self.label, self.done, self.total)

    def close(self) -> None:
        return None


def terminal_progress(label: str, total: int) -> Progress:
    """A tqdm bar on a terminal, log lines otherwise (tqdm writes to stderr: test that)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar: Progress = tqdm(total=total, desc=label, unit="msg", file=sys.stderr)
        return bar
    return LogProgress(label, total)


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: many gateways never retry in lock-step."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 30))
    return (rng or random).uniform(0, ceiling)


def uid_set(uids: Sequence[int]) -> str:
    """``1:100,103,105:110`` for sorted UIDs: a short command line whatever the count."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def _batches(uids: Sequence[int], large: set[int], size: int) -> Iterator[Sequence[int]]:
    """``uids`` in order, ``size`` at a time, each large message in a batch of its own."""
    batch: list[int] = []
    for uid in uids:
        if uid in large:
            if batch:
                yield batch
                batch = []
            yield [uid]
            continue
        batch.append(uid)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def describe(exc: BaseException) -> str:
    """One line an operator understands, whatever layer the error came from."""
    if isinstance(exc, MailboxUnavailable):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out ({exc or 'no answer'})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, IMAPClientAbortError):
        return f"connection lost: {exc}"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    if isinstance(exc, IMAPClientError):
        return f"IMAP error: {exc}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Fetched:
    """One fetched batch, ready to accept."""

    uids: list[int] = field(default_factory=list)
    items: list[Incoming] = field(default_factory=list)
    vanished: int = 0


@dataclass
class _Pending:
    """A batch being committed on the accept thread."""

    batch: Sequence[int]
    uids: list[int]
    future: Future[list[tuple[bool, str]]]


class _Mover:
    """Moves committed batches out of the folder on a second connection, in order.

    Moving costs the server about as much as fetching (measured on Dovecot: MOVE of 100
    messages ~11 ms against ~24 ms for their FETCH), so in a long back-fill it runs beside
    the fetches instead of between them. ``moved_through`` is the last UID whose batch is
    out of the folder; the fetching thread saves the cursor from it between batches (when
    no commit or pipeline transaction of its own is open). The first failure stops the
    moves; what is left stays in the folder, is found again by the next pass as
    duplicates, and is moved then.
    """

    def __init__(self, poller: MailboxPoller, folder: str, uidvalidity: int, *, background: bool):
        self.background = background
        self._poller = poller
        self._folder = folder
        self._uidvalidity = uidvalidity
        self._jobs: queue.Queue[tuple[list[int], list[int], int] | None] = queue.Queue()
        self._saved_through = 0
        self._saved_at = time.monotonic()
        self._error: BaseException | None = None
        self.moved_through = 0
        self._client: IMAPClient | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"imap-move-{poller.name}", daemon=True
            )
            self._thread.start()

    def submit(self, processed: list[int], quarantine: list[int], last_uid: int) -> None:
        if self._error is not None:
            raise self._error
        self._jobs.put((processed, quarantine, last_uid))

    def _run(self) -> None:
        poller, mailbox = self._poller, self._poller.mailbox
        while (job := self._jobs.get()) is not None:
            if self._error is not None:
                continue  # drain: nothing more is moved after a failure
            processed, quarantine, last_uid = job
            # Batches committed while the last MOVE ran go together: one command each way.
            while True:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # the end marker: keep it for the loop
                    break
                processed, quarantine = processed + more[0], quarantine + more[1]
                last_uid = more[2]
            try:
                if self._client is None:
                    self._client = poller.connect()
                    self._client.select_folder(self._folder)
                poller._move(self._client, processed, mailbox.processed_folder)
                poller._move(self._client, quarantine, mailbox.quarantine_folder)
                self.moved_through = last_uid
            except Exception as exc:
                self._error = exc

    def save_cursor(self) -> None:
        """Save the cursor up to what is moved, at most once a second."""
        through = self.moved_through
        if through > self._saved_through and (
            time.monotonic() - self._saved_at >= CURSOR_SAVE_SECONDS
        ):
            self._poller._save_state(self._folder, self._uidvalidity, through)
            self._saved_through, self._saved_at = through, time.monotonic()

    def finish(self) -> None:
        """Wait for every move submitted; raise the first failure."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(60)
            self._thread = None
        if self._client is not None:
            _logout(self._client)
            self._client = None


class MailboxPoller:
    """Reads one ``[[imap]]`` mailbox into the inbox; ``run_once`` or ``run`` until stopped."""

    def __init__(
        self,
        app: App,
        mailbox: ImapSettings,
        *,
        processing: Processing,
        progress: ProgressFactory = LogProgress,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.mailbox = mailbox
        self.name = mailbox.name
        self.processing = processing
        self.progress = progress
        self.rng = rng or random.Random()
        self.phase = "connecting"
        self.status = "starting"  # last known state, for logs and operators
        self.failures = 0
        self._folders: set[str] = set()  # known to exist on this connection
        self._missing: set[str] = set()  # warned about on this connection
        self._uidnext: Any = None  # UIDNEXT of the inbox folder when the last pass began
        self._stop = threading.Event()

    # ---- connection -------------------------------------------------------------------------

    def connect(self) -> IMAPClient:
        """Connected and authenticated; certificate checks on unless turned off per mailbox."""
        m = self.mailbox
        self.phase = f"connecting to {m.host}:{m.port}"
        # Loading the system's CA bundle costs ~50 ms: only for a connection that uses TLS.
        context = ssl.create_default_context() if m.security != "none" else None
        if context is not None and not m.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        # imapclient's default is no timeout at all: a stalled server would hang us (F9).
        timeout = SocketTimeout(connect=min(m.timeout_seconds, 30.0), read=m.timeout_seconds)
        client = IMAPClient(
            m.host,
            port=m.port,
            ssl=m.security == "tls",
            ssl_context=context if m.security == "tls" else None,
            timeout=timeout,
        )
        try:
            if m.security == "starttls":
                self.phase = "STARTTLS"
                client.starttls(context)
            self._authenticate(client)
        except BaseException:
            _close(client)
            raise
        self._folders, self._missing = set(), set()
        return client

    def _authenticate(self, client: IMAPClient) -> None:
        m = self.mailbox
        if m.oauth2_token_file or m.oauth2_token_command:
            self.phase = "AUTHENTICATE XOAUTH2"
            token = self._token()
            try:
                client.oauth2_login(m.user, token)
            except LoginError as exc:
                raise AuthenticationRejected(
                    f"{m.host} rejected the XOAUTH2 token for {m.user} ({_short(exc)}); "
                    "check the token source and that the app may use this mailbox"
                ) from None
            return
        self.phase = "LOGIN"
        try:
            password = secret(self.app.settings.source, m.password_env, m.password_file, "password")
        except SettingsError as exc:
            raise MailboxUnavailable(str(exc)) from None
        try:
            client.login(m.user, password or "")
        except LoginError as exc:
            raise AuthenticationRejected(
                f"{m.host} rejected the password for {m.user} ({_short(exc)})"
            ) from None

    def _token(self) -> str:
        """A fresh access token per connection: from a file a sidecar refreshes, or a command."""
        m = self.mailbox
        if m.oauth2_token_file:
            try:
                with open(m.oauth2_token_file, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                raise MailboxUnavailable(
                    f"cannot read oauth2_token_file {m.oauth2_token_file}: {exc.strerror or exc}"
                ) from None
            source = f"oauth2_token_file {m.oauth2_token_file}"
        else:
            argv = shlex.split(m.oauth2_token_command)
            try:
                done = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=TOKEN_COMMAND_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MailboxUnavailable(f"oauth2_token_command failed: {exc}") from None
            if done.returncode != 0:
                error = (done.stderr or "").strip().splitlines()[-1:] or ["no message"]
                raise MailboxUnavailable(
                    f"oauth2_token_command exited {done.returncode}: {error[0][:300]}"
                )
            token = done.stdout.strip()
            source = "oauth2_token_command"
        if not token:
            raise MailboxUnavailable(f"{source} gave an empty token")
        return token

    # ---- after a person released a message ---------------------------------------------------

    def move_released(self, message_id: str | None, key: str) -> str:
        """Staff released a message this poller had put in ``quarantine_folder``: move the
        server's copy on to ``processed_folder``, so the mailbox shows what the desk did.

        The copy is found by its Message-ID and confirmed by its content key (another
        message may carry the same Message-ID and stay quarantined). Returns a line for
        the operator; a failure here never undoes the release, it only says what is left.
        """
        m = self.mailbox
        where = f"{m.name}: {m.quarantine_folder}"
        if not message_id:
            return f"{where}: no Message-ID to find the copy by; move it by hand"
        try:
            client = self.connect()
        except Exception as exc:
            return f"{where}: mailbox unreachable ({describe(exc)}); the copy stays there"
        try:
            if not client.folder_exists(m.quarantine_folder):
                return f"{where}: no such folder; nothing to move"
            client.select_folder(m.quarantine_folder)
            candidates = client.search(["HEADER", "Message-ID", message_id])
            fetched = client.fetch(candidates, ["BODY.PEEK[]"]) if candidates else {}
            ours = [
                uid
                for uid, data in fetched.items()
                if isinstance(data.get(b"BODY[]"), bytes) and content_key(data[b"BODY[]"]) == key
            ]
            if not ours:
                return f"{where}: the copy is no longer there; nothing to move"
            self._move(client, sorted(ours), m.processed_folder)
            return f"{where}: moved to {m.processed_folder}"
        except Exception as exc:
            return f"{where}: could not move the copy ({describe(exc)}); move it by hand"
        finally:
            _logout(client)

    # ---- one pass ---------------------------------------------------------------------------

    def run_once(self) -> PassResult:
        """Connect, one pass over the folder (and the sent folder), log out: `poll --once`."""
        result = PassResult(self.name)
        try:
            client = self.connect()
        except Exception as exc:
            result.error = describe(exc)
            self.status = f"unreachable: {result.error}"
            log.error("%s: cannot use the mailbox: %s", self.name, result.error)
            return result
        try:
            self.pass_all(client, result.tally)
            self.status = "ok"
        except Exception as exc:
            result.error = f"{describe(exc)} (during {self.phase})"
            self.status = f"failed: {result.error}"
            log.error("%s: pass failed: %s", self.name, result.error)
            _close(client)  # LOGOUT on a broken or stalled connection would only wait
        else:
            _logout(client)
        return result

    def pass_all(self, client: IMAPClient, tally: Tally | None = None) -> Tally:
        tally = tally if tally is not None else Tally()
        tally.add(self.pass_folder(client, self.mailbox.folder, sent=False))
        sent = self.mailbox.sent_folder
        if sent and self._sent_folder_exists(client, sent):
            tally.add(self.pass_folder(client, sent, sent=True))
        return tally

    def _sent_folder_exists(self, client: IMAPClient, folder: str) -> bool:
        """A missing sent folder (a typo, a localised name) must not stop the inbox."""
        if folder in self._folders:
            return True
        self.phase = f"LIST {folder}"
        if client.folder_exists(folder):
            self._folders.add(folder)
            return True
        if folder not in self._missing:  # once per connection, not once per pass
            self._missing.add(folder)
            log.warning(
                "%s: sent folder %r does not exist; staff replies sent from this mailbox are "
                "not read (check [[imap]] sent_folder)",
                self.name,
                folder,
            )
        return False

    def pass_folder(self, client: IMAPClient, folder: str, *, sent: bool) -> Tally:
        tally = Tally()
        self.phase = f"SELECT {folder}"
        info = client.select_folder(folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        if not sent:
            self._uidnext = info.get(b"UIDNEXT")
        state = self._load_state(folder)
        if state is None and sent:
            # Sent Items is history: staff mail from before the gateway watched it is not a
            # reply the gateway should act on now. Start after what is there.
            start = _last_existing_uid(client, info)
            self._save_state(folder, uidvalidity, start)
            log.info(
                "%s: watching sent folder %s from UID %d on; earlier sent mail is not imported",
                self.name,
                folder,
                start + 1,
            )
            return tally
        last_uid = 0
        if state is not None and state[0] == uidvalidity:
            last_uid = state[1]
        self.phase = f"SEARCH {folder}"
        if state is not None and state[0] != uidvalidity and sent:
            since = (state[2] - timedelta(days=1)).date()
            log.warning(
                "%s: UIDVALIDITY of %s changed (%d -> %d): the folder was recreated or "
                "restored; resync of sent mail since %s (already imported mail is skipped "
                "as duplicate)",
                self.name,
                folder,
                state[0],
                uidvalidity,
                since.isoformat(),
            )
            uids = sorted(client.search(["SINCE", since, "NOT", "DELETED"]))
            # From here on the cursor is the end of the folder as this SELECT saw it.
            last_uid = _last_existing_uid(client, info)
        else:
            if state is not None and state[0] != uidvalidity:
                log.warning(
                    "%s: UIDVALIDITY of %s changed (%d -> %d): the folder was recreated or "
                    "restored; resync from the first message (already imported mail is "
                    "skipped as duplicate and moved)",
                    self.name,
                    folder,
                    state[0],
                    uidvalidity,
                )
            found = client.search(["UID", f"{last_uid + 1}:*", "NOT", "DELETED"])
            uids = sorted(u for u in found if u > last_uid)  # n:* always returns the last UID
        if not uids:
            if state is None or state[0] != uidvalidity:
                self._save_state(folder, uidvalidity, last_uid)
            return tally
        # Large mail is found by the server (one SEARCH, not a size per message): it is
        # fetched in a batch of its own, so a batch never holds more than batch_size
        # ordinary messages, and mail over the cap is never read into memory at all.
        self.phase = f"SEARCH LARGER {folder}"
        wanted = set(uids)
        threshold = min(LARGE_BYTES, self._cap())
        large = [
            u
            for u in client.search(["UID", f"{uids[0]}:{uids[-1]}", "LARGER", str(threshold)])
            if u in wanted
        ]
        sizes: dict[int, int] = {}
        if large:
            for uid, data in client.fetch(large, ["RFC822.SIZE"]).items():
                sizes[uid] = int(data.get(b"RFC822.SIZE", 0))
        oversized = {u: n for u, n in sizes.items() if n > self._cap()}
        progress = (
            self.progress(f"{self.name}/{folder}", len(uids))
            if len(uids) > PROGRESS_THRESHOLD
            else None
        )
        # Fetch, accept and move overlap: while the accept thread commits (and processes)
        # batch N, this thread fetches batch N+1, and a second connection moves batch N-1
        # (a long back-fill only; a short pass moves on this connection). A batch is moved
        # only once its commit is back, and the cursor is saved only after its moves, so
        # the order that makes a crash harmless holds for every batch. Each IMAP
        # connection is used by one thread only (imapclient is not thread-safe).
        pending: _Pending | None = None
        mover = _Mover(self, folder, uidvalidity, background=len(uids) > self.mailbox.batch_size)
        with ThreadPoolExecutor(1, thread_name_prefix=f"imap-accept-{self.name}") as pool:
            try:
                for batch in _batches(uids, set(large), max(1, self.mailbox.batch_size)):
                    fetched = self._fetch(client, folder, uidvalidity, batch, oversized, sent=sent)
                    tally.failed += len(batch) - len(fetched.uids) - fetched.vanished
                    if pending is not None:
                        self._hand_over(client, folder, pending, tally, mover, sent=sent)
                        if progress is not None:
                            progress.update(len(pending.batch))
                    mover.save_cursor()  # nothing of this pass is writing now
                    pending = _Pending(
                        batch, fetched.uids, pool.submit(self._accept, fetched.items)
                    )
                if pending is not None:
                    self._hand_over(client, folder, pending, tally, mover, sent=sent)
                    if progress is not None:
                        progress.update(len(pending.batch))
                pending = None
                self.phase = f"moving messages out of {folder}"
                mover.finish()
                self._save_state(folder, uidvalidity, uids[-1])
                if sent:  # after a sent-folder resync the cursor is the end the SELECT saw
                    self._save_state(folder, uidvalidity, last_uid)
            finally:
                mover.close()
                if pending is not None:
                    # A failure while its batch was committing: let the commit finish (it
                    # is durable either way); the messages stay in the folder for next time.
                    with contextlib.suppress(Exception):
                        pending.future.result()
                if progress is not None:
                    progress.close()
        return tally

    def _hand_over(
        self,
        client: IMAPClient,
        folder: str,
        pending: _Pending,
        tally: Tally,
        mover: _Mover,
        *,
        sent: bool,
    ) -> None:
        """A committed batch leaves the folder (sent mail stays where staff put it)."""
        processed, quarantine = self._finish(folder, pending, tally)
        if sent:
            return
        if mover.background:
            mover.submit(processed, quarantine, pending.batch[-1])
        else:
            self._move(client, processed, self.mailbox.processed_folder)
            self._move(client, quarantine, self.mailbox.quarantine_folder)

    def _cap(self) -> int:
        """Largest message read into memory: a mailbox may hold mail bigger than SMTP allows
        (server-added headers, internal senders), so twice the SMTP limit; beyond that it
        is left in the folder for a person, never half-read."""
        return SIZE_CAP_FACTOR * self.app.settings.smtp.max_message_bytes

    def _fetch(
        self,
        client: IMAPClient,
        folder: str,
        uidvalidity: int,
        batch: Sequence[int],
        oversized: dict[int, int],
        *,
        sent: bool,
    ) -> _Fetched:
        """BODY.PEEK[] of one batch (never \\Seen); oversized messages are not read at all."""
        cap = self._cap()
        wanted = []
        for uid in batch:
            if uid in oversized:
                log.error(
                    "%s: %s UID %d is %d bytes, over the %d-byte cap; left in the folder, "
                    "not imported",
                    self.name,
                    folder,
                    uid,
                    oversized[uid],
                    cap,
                )
            else:
                wanted.append(uid)
        result = _Fetched()
        if not wanted:
            return result
        self.phase = f"FETCH BODY.PEEK[] {folder} UIDs {wanted[0]}-{wanted[-1]}"
        fetched = client.fetch(wanted, ["BODY.PEEK[]"])
        for uid in wanted:
            raw = fetched.get(uid, {}).get(b"BODY[]")
            if not isinstance(raw, bytes):
                result.vanished += 1  # expunged between SEARCH and FETCH: not ours any more
                continue
            result.uids.append(uid)
            result.items.append(
                Incoming(
                    raw,
                    Envelope(),
                    source=f"imap:{self.name}:{folder}:{uidvalidity}:{uid}",
                    sent_copy=sent,
                )
            )
        return result

    def _accept(self, items: Sequence[Incoming]) -> list[tuple[bool, str]]:
        """On the accept thread: commit (the durable boundary), then process; per message
        (duplicate?, status)."""
        if not items:
            return []
        accepted = self.app.inbox.accept_many(items)
        statuses = self._settle(accepted)
        return [(a.duplicate, statuses.get(a.message_row_id, "received")) for a in accepted]

    def _finish(self, folder: str, pending: _Pending, tally: Tally) -> tuple[list[int], list[int]]:
        """Wait for a batch's commit and count it: (UIDs to move to processed, to quarantine)."""
        self.phase = f"accepting {len(pending.uids)} messages from {folder}"
        outcomes = pending.future.result()
        processed: list[int] = []
        quarantine: list[int] = []
        for uid, (duplicate, status) in zip(pending.uids, outcomes, strict=True):
            if duplicate:
                tally.duplicates += 1
            elif status == "quarantined":
                tally.quarantined += 1
            elif status == "failed":
                tally.failed += 1
            else:
                tally.imported += 1
            # Quarantined and failed mail needs a person: the quarantine folder shows them.
            (quarantine if status in ("quarantined", "failed") else processed).append(uid)
        return processed, quarantine

    def _settle(self, accepted: Sequence[Accepted]) -> dict[int, str]:
        """Run the pipeline on what is still "received"; answer each row's status."""
        ids = sorted({a.message_row_id for a in accepted})
        if self.processing == "inline":
            self.app.worker.process(ids)
        elif self.processing == "shared":
            self._wait_for_worker(ids)
        else:  # nothing processes them here: only an earlier copy can be past "received"
            ids = sorted({a.message_row_id for a in accepted if a.duplicate})
        return self._statuses(ids) if ids else {}

    def _wait_for_worker(self, ids: Sequence[int]) -> None:
        """Under `serve` the one worker thread processes: one batch transaction at a time."""
        deadline = time.monotonic() + SHARED_WORKER_WAIT_SECONDS
        while True:
            statuses = self._statuses(ids)
            if not any(s == "received" for s in statuses.values()):
                return
            if self._stop.is_set():
                raise Stopping()
            if time.monotonic() > deadline:
                log.warning(
                    "%s: the worker has not processed these messages in %.0f s; moving them "
                    "to the processed folder (they are safely accepted and will be processed)",
                    self.name,
                    SHARED_WORKER_WAIT_SECONDS,
                )
                return
            self.app.work_ready.set()
            self._stop.wait(0.02)

    def _statuses(self, ids: Sequence[int]) -> dict[int, str]:
        with self.app.sessions() as session:
            return {
                row_id: status
                for row_id, status in session.execute(
                    select(Message.id, Message.status).where(Message.id.in_(ids))
                )
            }

    def _move(self, client: IMAPClient, uids: Sequence[int], folder: str) -> None:
        """MOVE where offered; else COPY, flag \\Deleted and expunge only our UIDs."""
        if not uids:
            return
        self._ensure_folder(client, folder)
        which = uid_set(uids)
        self.phase = f"MOVE {len(uids)} messages to {folder}"
        if client.has_capability("MOVE"):
            client.move(which, folder)
            return
        client.copy(which, folder)
        client.add_flags(which, [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(which)
        else:
            # Plain EXPUNGE also removes what a person flagged \Deleted: acceptable, since
            # IMAP clients set \Deleted only to expunge, but say it once per connection.
            log.warning("%s: server lacks MOVE and UIDPLUS; using EXPUNGE", self.name)
            client.expunge()

    def _ensure_folder(self, client: IMAPClient, folder: str) -> None:
        if folder in self._folders:
            return
        if not client.folder_exists(folder):
            try:
                client.create_folder(folder)
                log.info("%s: created folder %s", self.name, folder)
            except IMAPClientError:
                if not client.folder_exists(folder):  # someone else created it meanwhile
                    raise
        self._folders.add(folder)

    # ---- cursor in the database -------------------------------------------------------------

    def _load_state(self, folder: str) -> tuple[int, int, datetime] | None:
        with self.app.sessions() as session:
            row = session.scalar(
                select(MailboxState).where(
                    MailboxState.mailbox == self.name, MailboxState.folder == folder
                )
            )
            return None if row is None else (row.uidvalidity, row.last_uid, row.updated_at)

    def _save_state(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        """Its own small transaction, after the moves: the cursor never runs ahead of them."""
        for _ in range(2):
            try:
                with self.app.sessions.begin() as session:
                    row = session.scalar(
                        select(MailboxState).where(
                            MailboxState.mailbox == self.name, MailboxState.folder == folder
                        )
                    )
                    if row is None:
                        session.add(
                            MailboxState(
                                mailbox=self.name,
                                folder=folder,
                                uidvalidity=uidvalidity,
                                last_uid=last_uid,
                                updated_at=utcnow(),
                            )
                        )
                    elif row.uidvalidity == uidvalidity:
                        row.last_uid = max(row.last_uid, last_uid)
                        row.updated_at = utcnow()
                    else:
                        row.uidvalidity, row.last_uid = uidvalidity, last_uid
                        row.updated_at = utcnow()
                return
            except IntegrityError:
                continue  # another process inserted the row first: update it instead

    # ---- the long-running loop (serve) ------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: pass, then IDLE (or sleep poll_seconds); reconnect on any failure."""
        self._stop = stop
        reason: str | None = None
        while not stop.is_set():
            client: IMAPClient | None = None
            clean = False
            try:
                client = self.connect()
                if reason is not None:
                    log.info(
                        "%s: reconnected to %s:%d (after: %s)",
                        self.name,
                        self.mailbox.host,
                        self.mailbox.port,
                        reason,
                    )
                else:
                    log.info(
                        "%s: connected to %s:%d as %s",
                        self.name,
                        self.mailbox.host,
                        self.mailbox.port,
                        self.mailbox.user,
                    )
                self._loop(client, stop)
                clean = True
            except Stopping:
                break
            except Exception as exc:
                if stop.is_set():
                    break
                reason = f"{describe(exc)} (during {self.phase})"
                delay = backoff_delay(self.failures, self.rng)
                self.failures += 1
                self.status = f"reconnecting: {reason}"
                logger = log.warning
                if not isinstance(exc, OSError | IMAPClientError | MailboxUnavailable):
                    logger = log.exception  # not the network: keep the traceback
                logger(
                    "%s: %s; reconnecting in %.1f s (attempt %d)",
                    self.name,
                    reason,
                    delay,
                    self.failures,
                )
                stop.wait(delay)
            finally:
                if client is not None:
                    # LOGOUT only on a healthy connection; a broken one would only wait.
                    (_logout if clean else _close)(client)
        self.status = "stopped"

    def _loop(self, client: IMAPClient, stop: threading.Event) -> None:
        m = self.mailbox
        idle = m.idle and client.has_capability("IDLE")
        if not idle:
            why = "server has no IDLE" if m.idle else "idle = false"
            log.info("%s: %s; polling every %.0f s", self.name, why, m.poll_seconds)
        first = True
        while not stop.is_set():
            tally = self.pass_all(client)
            self.failures = 0  # a whole pass worked: the next failure starts the backoff again
            self.status = "ok"
            if tally.total:
                log.info(
                    "%s: %d imported, %d duplicates, %d quarantined, %d failed",
                    self.name,
                    tally.imported,
                    tally.duplicates,
                    tally.quarantined,
                    tally.failed,
                )
            if idle:
                if first:
                    log.info("%s: waiting for new mail in %s (IDLE)", self.name, m.folder)
                    first = False
                self._idle(client, stop)
            else:
                self.phase = "waiting to poll"
                stop.wait(m.poll_seconds)

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """IDLE on the inbox folder until new mail, the renewal time, or the sent-folder poll."""
        m = self.mailbox
        period: float = IDLE_RENEW_SECONDS
        if m.sent_folder:
            period = min(period, m.poll_seconds)  # Sent Items has no IDLE of its own
        self.phase = f"SELECT {m.folder}"
        info = client.select_folder(m.folder)
        if info.get(b"UIDNEXT") != self._uidnext:
            # Mail arrived after the pass looked (IDLE reports only what comes after this
            # SELECT, and the EXISTS a MOVE answer carried went unread): pass again first.
            return
        self.phase = f"IDLE {m.folder}"
        client.idle()
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < period:
            if _has_buffered_input(client):
                break  # a notification poll() cannot see: idle_done reads it, then a pass
            asked = time.monotonic()
            responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
            for response in responses:
                if response[:1] == (b"BYE",):  # the server is going: no DONE to send
                    raise IMAPClientAbortError(f"server said BYE: {_text(response)}")
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                break
            if not responses and time.monotonic() - asked < IDLE_CHECK_SECONDS / 2:
                # imapclient answers [] at once when the socket hit EOF: the server has
                # gone. idle_done below reads the EOF and raises, which reconnects.
                break
        self.phase = "IDLE DONE"
        client.idle_done()


def _has_buffered_input(client: IMAPClient) -> bool:
    """Whether a server line already sits in imaplib's read buffer (or the TLS layer's).

    imapclient's idle_check polls the socket, but when the server's EXISTS arrived in the
    same read as the line before it (the "+ idling" continuation, or another response on
    a busy machine), it waits in the buffered reader where poll() never reports it, and
    the IDLE would sleep through new mail. Peeking without blocking finds it.
    """
    reader = getattr(getattr(client, "_imap", None), "file", None)
    if reader is None or not hasattr(reader, "peek"):
        return False
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (OSError, ValueError):  # nothing there (EAGAIN, TLS want-read) or closed
        return False
    finally:
        sock.settimeout(timeout)


def _close(client: IMAPClient) -> None:
    """Drop the socket without a LOGOUT: the connection is being thrown away anyway."""
    with contextlib.suppress(Exception):
        client.shutdown()


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        _close(client)


def _last_existing_uid(client: IMAPClient, info: dict[bytes, Any]) -> int:
    """UIDNEXT - 1 from SELECT; servers that leave UIDNEXT out are asked for the last UID."""
    if b"UIDNEXT" in info:
        return int(info[b"UIDNEXT"]) - 1
    found = client.search(["ALL"])
    return max(found) if found else 0


def _short(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text[:300]


def _text(response: tuple[Any, ...]) -> str:
    return " ".join(
        part.decode("utf-8", "replace") if isinstance(part, bytes) else str(part)
        for part in response
    )


def processing_for(app: App, *, under_serve: bool) -> Processing:
    """Inline for one-shot commands; the shared worker thread under serve; none if disabled."""
    if not app.settings.worker.enabled:
        return "none"
    return "shared" if under_serve else "inline"


def start_pollers(app: App, stop: threading.Event) -> list[threading.Thread]:
    """`serve`: one daemon thread per ``[[imap]]`` mailbox, all ended by the same event."""
    logging.getLogger("imapclient").setLevel(logging.WARNING)  # a line per connection close
    threads = []
    for mailbox in app.settings.imap:
        poller = MailboxPoller(app, mailbox, processing=processing_for(app, under_serve=True))
        thread = threading.Thread(
            target=poller.run, args=(stop,), name=f"imap:{mailbox.name}", daemon=True
        )
        thread.start()
        threads.append(thread)
    if threads:
        log.info("IMAP: %d mailbox poller(s) started", len(threads))
    return threads


def released_copy_mover(app: App, source: str) -> MailboxPoller | None:
    """The poller of the ``[[imap]]`` mailbox a message was read from, if it was."""
    for mailbox in app.settings.imap:
        if source.startswith(f"imap:{mailbox.name}:"):
            return MailboxPoller(app, mailbox, processing="none")
    return None
