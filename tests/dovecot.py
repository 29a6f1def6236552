"""A throwaway Dovecot IMAP server on loopback for tests and benchmarks (never the system one).

Set up exactly as ../shared/real-servers.md found to work: its own config, run dir, state
dir, logs and Maildir in one temp dir (chmod 0755, or the auth process cannot read the
passwd-file), mail owned by 65534, one listener on 127.0.0.1 and a free port. It is stopped
by SIGTERM to the master pid (``doveadm stop`` waits seconds for its children).
``restart()`` keeps the directory, so the mailboxes survive, as they do when a real server
restarts. When Dovecot cannot start, ``start()`` raises with its log: IMAP tests never skip.

The users file holds two kinds of secret per user: a password for LOGIN and, because
Dovecot 2.3 cannot validate real OAuth2 tokens offline, XOAUTH2 is enabled against the
same passwd-file, so a "token" is checked like a password. That proves our XOAUTH2
exchange and the handling of a rejected token; it does not prove Microsoft's token.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from imapclient import IMAPClient

from tests.support import free_port

USER = "gwtest"
PASSWORD = "gwpass"
MAIL_UID = 65534

# Dovecot's default capability list after login, minus what a test wants the server to lack.
FULL_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


class DovecotError(RuntimeError):
    """Dovecot could not be started or stopped; the message carries its log."""


class Dovecot:
    """One private Dovecot instance; ``without`` drops capabilities from what it advertises."""

    def __init__(
        self, *, without: Iterable[str] = (), xoauth2_token: str = "", tls: bool = False
    ) -> None:
        binary = shutil.which("dovecot") or (
            "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
        )
        if binary is None:
            raise DovecotError(
                "dovecot is not installed: scripts/test installs dovecot-imapd "
                "(apt-get install dovecot-imapd, as root)"
            )
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="cpsd-dovecot-"))
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = USER
        self.password = PASSWORD
        self.xoauth2_token = xoauth2_token
        self.tls = tls  # a self-signed certificate: STARTTLS on port, implicit TLS on tls_port
        self.tls_port = free_port() if tls else 0
        self.without = {c.upper() for c in without}
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_files()

    # ---- set-up ---------------------------------------------------------------------------

    def _write_files(self) -> None:
        root = self.root
        os.chmod(root, 0o755)  # mktemp -d gives 0700; the auth process must reach "users"
        for sub in ("run", "log", "state", "mail"):
            (root / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(root / "mail", MAIL_UID, MAIL_UID)
            uid = gid = MAIL_UID
            unprivileged = ""
        else:  # a non-root run: every Dovecot process runs as the current user
            uid, gid = os.getuid(), os.getgid()
            me = _user_name()
            unprivileged = (
                f"default_login_user = {me}\ndefault_internal_user = {me}\n"
                f"default_internal_group = {_group_name()}\n"
            )
        lines = [f"{USER}:{{PLAIN}}{PASSWORD}::::::"]
        (root / "users").write_text("\n".join(lines) + "\n")
        if self.xoauth2_token:
            # XOAUTH2 checks the bearer token against this passwd-file like a password.
            (root / "tokens").write_text(f"{USER}:{{PLAIN}}{self.xoauth2_token}::::::\n")
        capability = ""
        if self.without:
            kept = [c for c in FULL_CAPABILITIES.split() if c.split("=")[0] not in self.without]
            capability = f"imap_capability = {' '.join(kept)}\n"
        mechanisms = "plain login xoauth2" if self.xoauth2_token else "plain login"
        token_passdb = (
            f"passdb {{\n  driver = passwd-file\n  mechanisms = xoauth2\n"
            f"  args = scheme=PLAIN username_format=%u {root}/tokens\n}}\n"
            if self.xoauth2_token
            else ""
        )
        password_passdb_mechs = "  mechanisms = plain login\n" if self.xoauth2_token else ""
        ssl = "ssl = no"
        if self.tls:
            _self_signed(root / "cert.pem", root / "key.pem")
            ssl = f"ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem"
        (root / "dovecot.conf").write_text(
            f"""# Throwaway Dovecot 2.3: loopback only, plaintext auth, Maildir in a temp dir.
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot-info.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{root}/mail/%u/Maildir
mail_privileged_group =
first_valid_uid = 1
{unprivileged}{capability}{token_passdb}passdb {{
  driver = passwd-file
{password_passdb_mechs}  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
mailbox_idle_check_interval = 1 secs
# The process title shows the command in progress: tests can stop the server mid-FETCH.
verbose_proctitle = yes
"""
        )

    # ---- life cycle -----------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    def log(self) -> str:
        parts = []
        for name in ("master.out", "dovecot.log", "dovecot-info.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts) or "(Dovecot wrote no log)"

    def start(self, timeout: float = 20.0) -> Dovecot:
        check = subprocess.run(
            [self.binary, "-c", str(self.config), "-n"], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise DovecotError(f"Dovecot rejected its config:\n{check.stderr}\n{self.log()}")
        # -F: the master stays in the foreground as our child, so its exit is seen at once
        # and nothing daemonised holds our pipes. Its own output goes to the log dir.
        with (self.root / "log" / "master.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise DovecotError(f"dovecot exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(
                    f"Dovecot did not greet on {self.host}:{self.port} in {timeout:.0f} s\n"
                    f"{self.log()}"
                )
            time.sleep(0.01)

    def stop(self, timeout: float = 20.0, grace: float = 0.5) -> None:
        """Stop the whole instance, its IMAP processes too, as ``systemctl stop`` does.

        SIGTERM to the master alone is not enough: Dovecot's imap processes outlive it and
        keep serving the connections they have (they notice the master's death only when
        they next report to it), so a "restart" would not drop a client mid-FETCH. The
        master runs in its own session (start_new_session), so its process group is
        exactly this instance: SIGTERM the group (each imap process says BYE and closes),
        and SIGKILL what is left after ``grace`` — the master sometimes waits a full
        second for children that are already gone, which would slow every test.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        group = proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while (_group_alive(group) or _listening(self.host, self.port)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)

    def titles(self) -> dict[int, str]:
        """Live processes of this instance by pid, with their titles (verbose_proctitle shows
        the IMAP command each one is serving)."""
        if self.proc is None:
            return {}
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getpgid(int(entry)) != self.proc.pid:
                    continue
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except (OSError, ProcessLookupError):
                continue
            title = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
            if title:  # zombies have none
                found[int(entry)] = title
        return found

    def wait_until_busy_with(self, text: str, timeout: float = 30.0) -> tuple[int, str]:
        """Block until an imap process is inside a command whose title contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid, title in self.titles().items():
                if text in title:
                    return pid, title
            time.sleep(0.002)
        raise DovecotError(f"no Dovecot process was busy with {text!r} in {timeout:.0f} s")

    def restart(self) -> Dovecot:
        """Stop and start on the same directory and port: the same mailboxes come back."""
        self.stop()
        return self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- a client for the test's own side (append, look) -----------------------------------

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(self.user, self.password)
        return client

    def append(self, folder: str, messages: Iterable[bytes]) -> int:
        """APPEND messages on one connection (MULTIAPPEND in chunks); returns how many."""
        client = self.client()
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            count = 0
            chunk: list[bytes] = []
            for raw in messages:
                chunk.append(raw)
                if len(chunk) == 100:
                    client.multiappend(folder, chunk)
                    count, chunk = count + len(chunk), []
            if chunk:
                client.multiappend(folder, chunk)
                count += len(chunk)
            return count
        finally:
            client.logout()

    def count(self, folder: str) -> int:
        """Messages in a folder (0 when it does not exist)."""
        client = self.client()
        try:
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])
        finally:
            client.logout()

    def messages(self, folder: str) -> list[bytes]:
        client = self.client()
        try:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[uid][b"BODY[]"] for uid in sorted(data)]
        finally:
            client.logout()

    def seen(self, folder: str) -> int:
        """How many messages in a folder carry \\Seen (fetching must never set it)."""
        client = self.client()
        try:
            client.select_folder(folder, readonly=True)
            return len(client.search("SEEN"))
        finally:
            client.logout()


def imap_block(
    server: Dovecot,
    tmp: Path,
    *,
    name: str = "ops",
    folder: str = "INBOX",
    sent_folder: str = "",
    processed_folder: str = "CPSD/Processed",
    quarantine_folder: str = "CPSD/Quarantine",
    extra: str = "",
    secret: str | None = None,
    timeout: float = 10,
) -> str:
    """One [[imap]] table; the password sits in a file, as production keeps secrets."""
    if secret is None:
        password = tmp / f"imap-{name}.password"
        password.write_text(server.password + "\n")
        secret = f'password_file = "{password}"'
    sent = f'sent_folder = "{sent_folder}"\n' if sent_folder else ""
    return f"""
[[imap]]
name = "{name}"
host = "{server.host}"
port = {server.port}
security = "none"
user = "{server.user}"
{secret}
folder = "{folder}"
processed_folder = "{processed_folder}"
quarantine_folder = "{quarantine_folder}"
{sent}poll_seconds = 1
timeout_seconds = {timeout}
{extra}
"""


def _self_signed(cert: Path, key: Path) -> None:
    """A throwaway certificate for 127.0.0.1 that no system trusts (openssl is in the base
    image; the key is read by Dovecot's master process as root)."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )


def _group_alive(group: int) -> bool:
    """Any live process in the group; zombies (dead, waiting for init to reap) do not count."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp ...
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _group_name() -> str:
    import grp

    return grp.getgrgid(os.getgid()).gr_name
