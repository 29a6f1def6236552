"""Sender identity that does not trust ``parseaddr``.

Python 3.11 lacks the CVE-2023-27043 fix, and the header parser happily returns one
address from ``alice@example.org)<bob@example.org>``. Identity decides which cases a
message may touch, so anything ambiguous is refused rather than guessed (B21-B24).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from parsers.charsets import decode_raw_header, has_raw_8bit, message_charset_hints
from parsers.mime import POLICY, header_count

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u00ad]")


@dataclass(frozen=True)
class Address:
    """An addr-spec normalised for comparison: domain lower-case and IDNA-encoded."""

    local: str
    domain: str
    display_name: str = ""

    @property
    def addr_spec(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """What party matching compares: the whole address, lower-cased."""
        return self.addr_spec.lower()


@dataclass(frozen=True)
class SenderResult:
    address: Address | None
    problem: str | None = None


def normalise_domain(domain: str, *, single_label: bool = False) -> str | None:
    """IDNA (UTS-46-ish) normalisation; None when the domain is not a plausible host name.

    ``single_label`` admits a bare host name such as ``localhost``: cron jobs, monitoring
    and ticket systems send as ``root@localhost``, and that is who sent the message even
    though no party can own such a domain. A party's configured domain needs a dot.
    """
    domain = domain.strip().rstrip(".").lower()
    if not domain or _INVISIBLE.search(domain) or len(domain) > 253:
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None
    labels = ascii_domain.split(".")
    if len(labels) < (1 if single_label else 2) or not all(_LABEL.match(x) for x in labels):
        return None
    return ascii_domain


def parse_addr_spec(text: str, display_name: str = "") -> Address | None:
    """Parse a bare ``local@domain``; quoted local parts and extra ``@`` are refused."""
    text = text.strip()
    if text.count("@") != 1 or _INVISIBLE.search(text) or len(text) > 320:
        return None
    local, _, domain = text.partition("@")
    if not _LOCAL.match(local) or len(local) > 64:
        return None
    normalised = normalise_domain(domain, single_label=True)
    if normalised is None:
        return None
    return Address(local=local, domain=normalised, display_name=display_name)


def sender(message: EmailMessage) -> SenderResult:
    """The single From address, or a reason why no identity can be trusted."""
    count = header_count(message, "From")
    if count == 0:
        return SenderResult(None, "no From header")
    if count > 1:
        return SenderResult(None, f"{count} From headers (only one is allowed)")
    return _single_address(message, "From")


def _single_address(message: EmailMessage, name: str) -> SenderResult:
    try:
        header = message[name]
        addresses = header.addresses
        defects = header.defects
    except Exception:
        return SenderResult(None, f"{name} header cannot be parsed")
    if defects:
        only_encoding = all(type(d).__name__ == "UndecodableBytesDefect" for d in defects)
        decoded = _decoded_8bit(message, name) if only_encoding else None
        if decoded is None:
            return SenderResult(None, f"{name} header is malformed ({type(defects[0]).__name__})")
        addresses = decoded
    if len(addresses) != 1:
        return SenderResult(None, f"{name} header has {len(addresses)} addresses, expected one")
    only = addresses[0]
    if not only.username or not only.domain:
        return SenderResult(None, f"{name} header has no usable address")
    address = parse_addr_spec(f"{only.username}@{only.domain}", only.display_name or "")
    if address is None:
        return SenderResult(None, f"{name} address {only.addr_spec!r} is not a plain address")
    # The display name may itself look like an address (Outlook writes
    # "ops@party.example" <ops@party.example>): identity is the addr-spec alone (B22).
    return SenderResult(address)


def _decoded_8bit(message: EmailMessage, name: str) -> tuple[Any, ...] | None:
    """Addresses of a header sent as raw 8-bit bytes (B35), or None if still malformed.

    SMTPUTF8 mail carries UTF-8 addresses; older clients put a windows-1251 or GB2312
    display name in the header without encoded words. The bytes are decoded first
    (``decode_raw_header`` never lets a charset swallow an ASCII ``<`` or ``@``), then
    parsed again; any defect left still refuses the sender.
    """
    for key, value in message.raw_items():
        if key.lower() != name.lower():
            continue
        hints = message_charset_hints(message)
        try:
            header = POLICY.header_factory(name, decode_raw_header(str(value), hints))
        except Exception:
            return None
        if header.defects or has_raw_8bit(str(header)):
            return None
        return tuple(header.addresses)
    return None


def address_list(message: EmailMessage, name: str, cap: int = 100) -> list[Address]:
    """Recipients from To/Cc, bounded; unparseable entries are skipped (never identity)."""
    out: list[Address] = []
    try:
        headers = message.get_all(name) or []
    except Exception:
        return out
    for header in headers:
        for item in getattr(header, "addresses", ()):
            if not item.username or not item.domain:
                continue
            address = parse_addr_spec(f"{item.username}@{item.domain}", item.display_name or "")
            if address is not None:
                out.append(address)
            if len(out) >= cap:
                return out
    return out
