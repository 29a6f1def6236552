"""settings.toml → frozen, typed settings.

Every key is declared here with its type; an unknown key or a value of the wrong type
stops the program with one line naming the file and the key, because a typo in a
production config must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

CONFIG_ENV = "CPSD_GATEWAY_CONFIG"


class SettingsError(Exception):
    """A configuration problem, worded as one line for the operator."""


@dataclass(frozen=True)
class GatewaySettings:
    mailboxes: tuple[str, ...] = ("cpsd@elexon.example",)
    reference_prefix: str = "CPSD"
    staff_domains: tuple[str, ...] = ("elexon.example",)
    staff_mailbox: str = "servicedesk-team@elexon.example"  # where staff are told things
    plus_addressing: bool = True
    reopen_days: int = 10
    message_id_domain: str = ""  # empty: the domain of the first mailbox
    installation_id: str = "cpsd-gateway"
    timezone: str = "Europe/London"
    # New cases one sender may raise in an hour; past it their new cases wait in
    # quarantine for staff (a script gone wrong, a mail loop, reference guessing: B51).
    # 0 = no limit. Staff and replies to existing cases are never limited.
    max_new_cases_per_sender_per_hour: int = 50

    def is_staff(self, address: str) -> bool:
        """An address of Elexon's own staff (by domain, compared in lower case)."""
        domain = address.rpartition("@")[2].lower()
        return any(domain == d.lower() for d in self.staff_domains)


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/gateway.db"
    busy_timeout_ms: int = 10_000


@dataclass(frozen=True)
class StorageSettings:
    backend: Literal["database", "directory"] = "database"
    raw_dir: str = "var/raw"


@dataclass(frozen=True)
class SmtpSettings:
    enabled: bool = True
    listen: str = "127.0.0.1:2525"
    max_message_bytes: int = 26_214_400
    max_recipients: int = 100
    max_sessions: int = 64  # past it a new connection gets 421 (each may hold a message)
    # MAIL FROM gets 452 while the disk holding the database (or raw store) has less
    # than this plus 1.5x the message's size free (Postfix's queue_minfree, F7).
    min_free_bytes: int = 64 * 1024 * 1024
    timeout_seconds: int = 300
    hostname: str = ""
    # STARTTLS (gateway/ingress/smtp_tls.py): a PEM certificate chain and its key (the
    # key may sit in the same file). require_tls refuses MAIL before STARTTLS with 530.
    tls_certificate_file: str = ""
    tls_key_file: str = ""
    require_tls: bool = False


@dataclass(frozen=True)
class WorkerSettings:
    enabled: bool = True
    # Messages per worker transaction. On SQLite the transaction holds the write lock
    # while it runs (~5 ms a message, parsing done before it), and an accept that comes
    # waiting ends the batch after the message in hand; larger batches measured no
    # faster (52 vs 53 msg/s at 50 in session 1; 189-197 vs 180-194 at 25 in session 7).
    batch_size: int = 10
    idle_seconds: float = 1.0
    # Child processes that parse and analyse the next batch while this one is written
    # (gateway/prepare.py); 0 does it in the worker's own thread, before each batch.
    prepare_processes: int = 1


@dataclass(frozen=True)
class OutboundSettings:
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: str = "var/outbox"
    from_address: str = "cpsd@elexon.example"
    from_name: str = "Cross-Party Service Desk"
    relay_host: str = "127.0.0.1"
    relay_port: int = 25
    security: Literal["tls", "starttls", "none"] = "starttls"
    verify_certificates: bool = True
    user: str = ""
    password_env: str = ""
    password_file: str = ""
    timeout_seconds: float = 30.0
    retry_for_hours: float = 48.0
    max_automatic_per_recipient_per_hour: int = 10  # auto replies past this are held (I5)


@dataclass(frozen=True)
class SlaSettings:
    """Response and resolution targets per priority (DIP SLA: P1 6 h, P2 10 h, round the clock)."""

    p1_response_hours: float = 0.5
    p1_resolution_hours: float = 6.0
    p1_business_hours: bool = False
    p2_response_hours: float = 1.0
    p2_resolution_hours: float = 10.0
    p2_business_hours: bool = False
    p3_response_hours: float = 4.0
    p3_resolution_hours: float = 25.5
    p3_business_hours: bool = True
    p4_response_hours: float = 8.5
    p4_resolution_hours: float = 42.5
    p4_business_hours: bool = True
    default_priority: Literal["P1", "P2", "P3", "P4"] = "P3"
    business_start: str = "09:00"
    business_end: str = "17:30"
    business_days: tuple[int, ...] = (1, 2, 3, 4, 5)  # ISO weekdays, Monday = 1
    holidays: tuple[str, ...] = (
        "2026-12-25",
        "2026-12-28",
        "2027-01-01",
        "2027-03-26",
        "2027-03-29",
        "2027-05-03",
        "2027-05-31",
        "2027-08-30",
        "2027-12-27",
        "2027-12-28",
    )
    warn_fraction: float = 0.8


@dataclass(frozen=True)
class ImapSettings:
    """One shared mailbox read over IMAP (``[[imap]]``, any number of them)."""

    name: str = ""
    host: str = ""
    port: int = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    verify_certificates: bool = True
    user: str = ""
    password_env: str = ""
    password_file: str = ""
    oauth2_token_file: str = ""
    oauth2_token_command: str = ""
    folder: str = "INBOX"
    processed_folder: str = "CPSD/Processed"
    quarantine_folder: str = "CPSD/Quarantine"
    sent_folder: str = ""
    poll_seconds: float = 60.0
    idle: bool = True
    batch_size: int = 250
    timeout_seconds: float = 60.0
    # "microsoft-365": the mailbox is in Exchange Online, whose Authentication-Results
    # carry no authserv-id; its topmost one (and Internal for mail from the tenant) is
    # trusted for this mailbox's mail. "": only [authentication] authserv_ids count.
    authentication_results: Literal["", "microsoft-365"] = ""


AuthPolicy = Literal["strict", "relaxed", "off"]


@dataclass(frozen=True)
class AuthenticationSettings:
    """Whose Authentication-Results we trust and what a sender that fails them gets (B48).

    ``authserv_ids`` empty: no MTA in front of us checks SPF/DKIM/DMARC, so nothing is
    checked (the direct-SMTP demo). ``policy``, per party overridable in the directory:
    strict quarantines anything not verified; relaxed quarantines a fail and lets an
    unverified message through without automatic mail to parties; off only records.
    """

    authserv_ids: tuple[str, ...] = ()
    policy: AuthPolicy = "strict"


@dataclass(frozen=True)
class PartiesSettings:
    file: str = "parties.toml"


@dataclass(frozen=True)
class TemplatesSettings:
    dir: str = "templates"


@dataclass(frozen=True)
class Settings:
    """All settings; relative paths are already resolved against the settings file."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    parties: PartiesSettings = field(default_factory=PartiesSettings)
    templates: TemplatesSettings = field(default_factory=TemplatesSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    authentication: AuthenticationSettings = field(default_factory=AuthenticationSettings)
    imap: tuple[ImapSettings, ...] = ()
    source: str = "<defaults>"

    @property
    def message_id_domain(self) -> str:
        if self.gateway.message_id_domain:
            return self.gateway.message_id_domain
        return self.gateway.mailboxes[0].rpartition("@")[2]


_SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name not in ("source", "imap")
}
_PATH_KEYS = {
    ("imap", "password_file"),
    ("imap", "oauth2_token_file"),
    ("storage", "raw_dir"),
    ("outbound", "maildir"),
    ("outbound", "password_file"),
    ("parties", "file"),
    ("smtp", "tls_certificate_file"),
    ("smtp", "tls_key_file"),
    ("templates", "dir"),
}


def config_path(explicit: str | None) -> Path:
    """--config wins, then CPSD_GATEWAY_CONFIG, then settings.toml in the working directory."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or "settings.toml")


def load(path: Path) -> Settings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    return from_mapping(data, source=str(path), base=path.resolve().parent)


def from_mapping(
    data: dict[str, Any], *, source: str = "<dict>", base: Path | None = None
) -> Settings:
    """Build settings from a parsed TOML mapping; used by tests to build Settings directly."""
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name == "imap":
            sections["imap"] = _imap_list(source, value, base)
            continue
        if name not in _SECTIONS:
            raise SettingsError(f"{source}: unknown section [{name}]")
        if not isinstance(value, dict):
            raise SettingsError(f"{source}: [{name}] must be a table")
        sections[name] = _section(source, name, _SECTIONS[name], value, base)
    if base is not None:
        database = sections.get("database", DatabaseSettings())
        url = _resolve_sqlite(database.url, base)
        sections["database"] = dataclasses.replace(database, url=url)
    settings = Settings(**sections, source=source)
    _check(settings)
    return settings


def _imap_list(source: str, value: Any, base: Path | None) -> tuple[ImapSettings, ...]:
    if not isinstance(value, list):
        raise SettingsError(f"{source}: imap must be an array of tables ([[imap]])")
    mailboxes: list[ImapSettings] = []
    for index, table in enumerate(value):
        where = f"imap #{index + 1}"
        if not isinstance(table, dict):
            raise SettingsError(f"{source}: [[imap]] #{index + 1} must be a table")
        mailbox = _section(source, where, ImapSettings, table, base)
        for key in ("name", "host", "user"):
            if not getattr(mailbox, key):
                raise SettingsError(f"{source}: [{where}] {key} is required")
        secrets = [k for k in _IMAP_SECRETS if getattr(mailbox, k)]
        if len(secrets) != 1:
            raise SettingsError(
                f"{source}: [{where}] give exactly one of {', '.join(_IMAP_SECRETS)}"
            )
        mailboxes.append(mailbox)
    names = [m.name for m in mailboxes]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SettingsError(f"{source}: [[imap]] name {duplicate!r} is used twice")
    return tuple(mailboxes)


_IMAP_SECRETS = ("password_env", "password_file", "oauth2_token_file", "oauth2_token_command")


def _section(source: str, name: str, cls: type, values: dict[str, Any], base: Path | None) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise SettingsError(f"{source}: unknown key [{name}] {key}")
        try:
            value = _coerce(hints[key], value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{source}: [{name}] {key}: {exc}") from None
        if (name.split(" #")[0], key) in _PATH_KEYS and value and base is not None:
            value = str((base / value).resolve())
        kwargs[key] = value
    if base is not None:
        for key in {k for s, k in _PATH_KEYS if s == name} - kwargs.keys():
            default = getattr(cls(), key)
            if default:
                kwargs[key] = str((base / default).resolve())
    return cls(**kwargs)


def _resolve_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path is relative to the settings file, like every other path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix) :].startswith("/") or url == prefix:
        return url
    return prefix + str((base / url[len(prefix) :]).resolve())


def _coerce(hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            allowed = ", ".join(repr(a) for a in get_args(hint))
            raise ValueError(f"must be one of {allowed}, not {value!r}")
        return value
    if origin is tuple:
        (item,) = {a for a in get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list):
            raise TypeError("must be a list")
        return tuple(_coerce(item, v) for v in value)
    if origin in (types.UnionType, typing.Union):
        raise TypeError("unsupported setting type")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise TypeError(f"must be true or false, not {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"must be a whole number, not {value!r}")
    if not isinstance(value, hint):
        raise TypeError(f"must be a {hint.__name__}, not {value!r}")
    return value


def _check(settings: Settings) -> None:
    src = settings.source
    if not settings.gateway.mailboxes:
        raise SettingsError(f"{src}: [gateway] mailboxes must name at least one address")
    for mailbox in settings.gateway.mailboxes:
        if mailbox.count("@") != 1:
            raise SettingsError(f"{src}: [gateway] mailboxes: {mailbox!r} is not an address")
    prefix = settings.gateway.reference_prefix
    if not (prefix.isascii() and prefix.isalpha() and 2 <= len(prefix) <= 10):
        raise SettingsError(f"{src}: [gateway] reference_prefix must be 2-10 letters")
    if settings.gateway.max_new_cases_per_sender_per_hour < 0:
        raise SettingsError(
            f"{src}: [gateway] max_new_cases_per_sender_per_hour must be 0 (no limit) or more"
        )
    if not 0 <= settings.worker.prepare_processes <= 64:
        raise SettingsError(f"{src}: [worker] prepare_processes must be 0 to 64")
    if settings.worker.batch_size < 1:
        raise SettingsError(f"{src}: [worker] batch_size must be at least 1")
    host, _, port = settings.smtp.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{src}: [smtp] listen must be host:port, not {settings.smtp.listen!r}")
    if settings.smtp.max_message_bytes < 1024:
        raise SettingsError(f"{src}: [smtp] max_message_bytes must be at least 1024")
    if settings.smtp.min_free_bytes < 0:
        raise SettingsError(f"{src}: [smtp] min_free_bytes must be 0 or more")
    if settings.smtp.max_sessions < 1:
        raise SettingsError(f"{src}: [smtp] max_sessions must be at least 1")
    if settings.smtp.require_tls and not settings.smtp.tls_certificate_file:
        raise SettingsError(f"{src}: [smtp] require_tls needs tls_certificate_file")
    if settings.smtp.tls_key_file and not settings.smtp.tls_certificate_file:
        raise SettingsError(f"{src}: [smtp] tls_key_file needs tls_certificate_file")
    if not settings.database.url or "://" not in settings.database.url:
        raise SettingsError(f"{src}: [database] url must be a database URL")
    if settings.database.url in ("sqlite://", "sqlite:///") or ":memory:" in settings.database.url:
        # A 250 must mean "stored": mail accepted into memory is gone at the next restart.
        raise SettingsError(f"{src}: [database] url: SQLite in memory keeps nothing; name a file")


def secret(settings_source: str, env_name: str, file_name: str, what: str) -> str | None:
    """A secret from the environment or a file named in settings; never from the TOML itself."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise SettingsError(
                f"{settings_source}: {what}: environment variable {env_name} is not set"
            )
        return value
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"{settings_source}: {what}: cannot read {file_name}: {exc}"
            ) from None
    return None
