"""Sender authentication as our own MTA recorded it (RFC 8601), never as the sender claims.

Anyone can write ``From: ops@brightenergy.example``. Whether the mail really came from
that domain is what the MTA in front of us checked (SPF, DKIM, DMARC) and wrote into an
``Authentication-Results`` field with its authserv-id. So only fields carrying an id we
trust are read, and of those only the topmost: the MTA prepends its own above everything
the message arrived with, and should strip incoming ones with its id (RFC 8601 §5); when
it does not, the topmost is still its own, and a forged one further down is never read
(reliability.md B49).

Microsoft 365 (a shared mailbox in Exchange Online, read over IMAP) writes its field
without an authserv-id: ``Authentication-Results: spf=pass (sender IP is …)
smtp.mailfrom=…; dkim=pass …; dmarc=pass action=none header.from=…; compauth=…``. For
such a mailbox the topmost field is read when it has no authserv-id: Exchange Online
prepends its own above whatever the message arrived with. Mail from inside the tenant
(staff) carries no such field; Exchange marks it ``X-MS-Exchange-Organization-AuthAs:
Internal``, a header its header firewall removes from mail arriving from outside.

The verdict: DMARC's, when the MTA evaluated it (it did the alignment). Otherwise an SPF
or DKIM pass for the From domain (or a domain it belongs to) is a pass, SPF failing with
no such DKIM pass is a fail (B48). A temporary or permanent error is neither (F18): it is
"unverified", as is a message with no trusted field at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

import authres

Verdict = Literal["pass", "fail", "unverified"]

MICROSOFT_365 = "microsoft-365"  # the name its authserv-id-less fields are judged under
MAX_FIELDS = 50  # Authentication-Results fields looked at (B49: a message may carry many)
MAX_VALUE = 8192  # characters of one field
_ERRORS = frozenset({"temperror", "permerror"})
_FAILS = frozenset({"fail", "softfail"})


@dataclass(frozen=True)
class Authentication:
    verdict: Verdict
    reason: str  # for a person: which field, which method, which domain


def authenticate(
    message: EmailMessage,
    from_domain: str,
    trusted_ids: Collection[str],
    *,
    microsoft_365: bool = False,
) -> Authentication:
    """The verdict of the topmost Authentication-Results field with a trusted authserv-id
    (or, from a Microsoft 365 mailbox, of its topmost field without one)."""
    trusted = {t.lower() for t in trusted_ids}
    values = [_unfold(str(v)) for v in (message.get_all("Authentication-Results") or [])]
    if microsoft_365:
        if _headers(message, "X-MS-Exchange-Organization-AuthAs") == ["internal"]:
            return Authentication("pass", "sent from inside the Microsoft 365 organisation")
        if values and "=" in _authserv_id(values[0]):  # no authserv-id: Exchange Online's
            return verdict(f"{MICROSOFT_365}; {values[0]}", from_domain)
    for value in values[:MAX_FIELDS]:
        if _authserv_id(value) in trusted:
            return verdict(value, from_domain)
    names = ", ".join(sorted(trusted))
    return Authentication("unverified", f"no Authentication-Results from {names}")


def verdict(value: str, from_domain: str) -> Authentication:
    """Judge one trusted field's value for mail whose From domain is ``from_domain``."""
    try:
        header = authres.all_features().parse_value(value[:MAX_VALUE])
    except authres.AuthResError as exc:
        return Authentication("unverified", f"unreadable Authentication-Results: {exc}")
    where = f"(Authentication-Results from {header.authserv_id})"
    results: Sequence[Any] = header.results
    domain = from_domain.lower()
    # DMARC speaks for the From domain it evaluated; for another one it says nothing here.
    dmarc = [
        r
        for r in results
        if r.method == "dmarc" and _property(r, "header", "from") in (None, domain)
    ]
    if dmarc and dmarc[0].result in ("pass", "fail", *_ERRORS):
        said = f"dmarc={dmarc[0].result} {where}"
        if dmarc[0].result in _ERRORS:
            return Authentication("unverified", said)
        return Authentication(dmarc[0].result, said)
    for r in results:
        if r.result == "pass" and r.method in ("dkim", "spf"):
            signer = _property(r, "header", "d") if r.method == "dkim" else _spf_domain(r)
            if signer and _aligned(domain, signer):
                return Authentication("pass", f"{r.method}=pass for {signer} {where}")
    spf = [r.result for r in results if r.method == "spf"]
    dkim = [r.result for r in results if r.method == "dkim"]
    if any(s in _ERRORS for s in spf + dkim):
        return Authentication("unverified", f"temporary or permanent error {where}")
    if spf and all(s in _FAILS for s in spf):  # and no aligned pass, or we had returned
        return Authentication("fail", f"spf={spf[0]}, no DKIM pass for {domain} {where}")
    return Authentication("unverified", f"no SPF or DKIM pass for {domain} {where}")


def _headers(message: EmailMessage, name: str) -> list[str]:
    """Every value of a header, lower-cased; two where one is expected prove nothing."""
    try:
        found = message.get_all(name) or []
        return [" ".join(str(v).split()).lower() for v in found[:MAX_FIELDS]]
    except Exception:  # an unparseable value says nothing
        return ["unreadable"]


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _authserv_id(value: str) -> str:
    """The first token, read without the full parser: it only picks which field to trust."""
    return value.split(";", 1)[0].strip().split(" ", 1)[0].lower()


def _property(result: Any, ptype: str, name: str) -> str | None:
    for prop in result.properties:
        if prop.type == ptype and prop.name == name and prop.value:
            return str(prop.value).lower()
    return None


def _spf_domain(result: Any) -> str | None:
    identity = _property(result, "smtp", "mailfrom") or _property(result, "smtp", "helo")
    return identity.rpartition("@")[2] if identity else None


def _aligned(from_domain: str, signer: str) -> bool:
    """Relaxed alignment without the public suffix list: one domain inside the other.

    DMARC's relaxed rule (RFC 7489 §3.2) compares organisational domains found with the
    public suffix list, so ``billing.brightenergy.co.uk`` would align with a signature by
    ``mail.brightenergy.co.uk``. We deliberately do not: the list only knows the suffixes
    registered with it, and shared ones it lacks make strangers siblings. Every Microsoft
    365 tenant gets ``<tenant>.onmicrosoft.com``, which the list does not name, so any
    tenant's DKIM pass would vouch for every other tenant's From. Sibling subdomains are
    rare for a party's mail and, when the MTA evaluated DMARC, its verdict decides anyway.

    A signer of fewer than two labels (``example``) never aligns: no organisation signs
    for a whole top-level domain.
    """
    if signer.count(".") < 1:
        return False
    return (
        from_domain == signer
        or from_domain.endswith("." + signer)
        or signer.endswith("." + from_domain)
    )
