"""Sender authentication read from our MTA's Authentication-Results only (B48, B49, F18)."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from parsers.authentication import authenticate

OURS = "mx.elexon.example"
BRIGHT = "brightenergy.example"


def _message(*results: str) -> EmailMessage:
    fields = "".join(f"Authentication-Results: {r}\r\n" for r in results)
    raw = (
        f"{fields}From: Ops <ops@{BRIGHT}>\r\nTo: cpsd@elexon.example\r\n"
        "Subject: IF-041 rejected\r\n\r\nPlease look.\r\n"
    ).encode()
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    ("result", "verdict"),
    [
        (f"{OURS}; dmarc=pass header.from={BRIGHT}", "pass"),
        (f"{OURS}; spf=pass smtp.mailfrom={BRIGHT}; dmarc=fail header.from={BRIGHT}", "fail"),
        (f"{OURS}; dkim=pass header.d={BRIGHT} header.s=s1", "pass"),
        (f"{OURS}; dkim=pass header.d=mail.{BRIGHT}", "pass"),  # relaxed alignment
        (f"{OURS}; spf=pass smtp.mailfrom=bounces@{BRIGHT}", "pass"),
        # Passes for someone else's domain prove nothing about the From domain.
        (
            f"{OURS}; dkim=pass header.d=attacker.example; spf=pass smtp.mailfrom=attacker.example",
            "unverified",
        ),
        (f"{OURS}; dkim=pass header.d=example", "unverified"),
        (f"{OURS}; dmarc=pass header.from=attacker.example", "unverified"),  # not our From
        (f"{OURS}; spf=fail smtp.mailfrom={BRIGHT}; dkim=fail header.d={BRIGHT}", "fail"),
        (f"{OURS}; spf=softfail smtp.mailfrom={BRIGHT}; dkim=none", "fail"),
        (f"{OURS}; spf=fail smtp.mailfrom={BRIGHT}; dkim=pass header.d=mailer.example", "fail"),
        # F18: a DNS failure is never a pass and never a fail.
        (f"{OURS}; dmarc=temperror header.from={BRIGHT}", "unverified"),
        (
            f"{OURS}; spf=temperror smtp.mailfrom={BRIGHT}; dkim=temperror header.d={BRIGHT}",
            "unverified",
        ),
        (f"{OURS}; none", "unverified"),
        (f"{OURS}; ;;; garbage ===", "unverified"),
    ],
)
def test_the_verdict_of_our_mta(result: str, verdict: str) -> None:
    assert authenticate(_message(result), BRIGHT, [OURS]).verdict == verdict


def test_a_forged_pass_below_our_mtas_fail_is_never_read() -> None:
    # Our MTA prepended its verdict; the sender had written its own "pass" with our id.
    message = _message(
        f"{OURS}; dmarc=fail header.from={BRIGHT}",
        f"{OURS}; dmarc=pass header.from={BRIGHT}",
    )
    found = authenticate(message, BRIGHT, [OURS])
    assert found.verdict == "fail"
    assert "dmarc=fail" in found.reason and OURS in found.reason


def test_fields_from_other_servers_are_ignored_whatever_they_say() -> None:
    message = _message(
        f"mx.attacker.example; dmarc=pass header.from={BRIGHT}",
        f"{BRIGHT}; dkim=pass header.d={BRIGHT}",
    )
    found = authenticate(message, BRIGHT, [OURS])
    assert found.verdict == "unverified"
    assert found.reason == f"no Authentication-Results from {OURS}"


def test_with_the_mta_stripping_forged_fields_the_one_left_is_ours() -> None:
    message = _message(f"{OURS}; dkim=pass header.d={BRIGHT}")
    assert authenticate(message, BRIGHT, [OURS.upper()]).verdict == "pass"


def test_an_unreadable_field_of_ours_is_unverified_with_a_reason() -> None:
    found = authenticate(_message(f"{OURS}; dkim"), BRIGHT, [OURS])
    assert found.verdict == "unverified"
    assert found.reason.startswith("unreadable Authentication-Results")


def test_a_folded_field_is_read_whole() -> None:
    message = _message(f"{OURS};\r\n\tspf=fail smtp.mailfrom={BRIGHT};\r\n\tdkim=none")
    assert authenticate(message, BRIGHT, [OURS]).verdict == "fail"


# -- a shared mailbox in Microsoft 365 ----------------------------------------------------

M365 = (
    "spf=pass (sender IP is 40.107.22.51) smtp.mailfrom={d}; dkim=pass (signature was "
    "verified) header.d={d};dmarc={dmarc} action=none header.from={d};compauth=pass reason=100"
)


@pytest.mark.parametrize(
    ("field", "verdict"),
    [
        (M365.format(d=BRIGHT, dmarc="pass"), "pass"),
        (M365.format(d=BRIGHT, dmarc="fail"), "fail"),
        (
            f"spf=fail (sender IP is 192.0.2.9) smtp.mailfrom={BRIGHT}; dkim=none (message not "
            f"signed) header.d=none;dmarc=none action=none header.from={BRIGHT};"
            "compauth=fail reason=001",
            "fail",
        ),
        (M365.format(d="attacker.example", dmarc="pass"), "unverified"),
    ],
)
def test_exchange_onlines_own_field_decides_for_a_microsoft_365_mailbox(
    field: str, verdict: str
) -> None:
    found = authenticate(_message(field), BRIGHT, (), microsoft_365=True)
    assert found.verdict == verdict, found.reason
    assert "microsoft-365" in found.reason


def test_a_field_without_an_authserv_id_is_trusted_only_from_a_microsoft_365_mailbox() -> None:
    message = _message(M365.format(d=BRIGHT, dmarc="pass"))
    assert authenticate(message, BRIGHT, (OURS,)).verdict == "unverified"


def test_a_forged_pass_below_exchange_onlines_fail_is_never_read() -> None:
    message = _message(M365.format(d=BRIGHT, dmarc="fail"), M365.format(d=BRIGHT, dmarc="pass"))
    assert authenticate(message, BRIGHT, (), microsoft_365=True).verdict == "fail"


def _internal(*auth_as: str) -> EmailMessage:
    message = _message()
    for value in auth_as:
        message["X-MS-Exchange-Organization-AuthAs"] = value
    return message


def test_mail_from_inside_the_tenant_is_exchanges_to_vouch_for() -> None:
    found = authenticate(_internal("Internal"), "elexon.example", (), microsoft_365=True)
    assert found.verdict == "pass"
    assert authenticate(_internal("Internal"), "elexon.example", ()).verdict == "unverified"
    assert authenticate(_internal("Anonymous"), BRIGHT, (), microsoft_365=True).verdict == (
        "unverified"
    )
    # Two answers where Exchange writes one: not proof of anything.
    assert (
        authenticate(_internal("Anonymous", "Internal"), BRIGHT, (), microsoft_365=True).verdict
        == "unverified"
    )


@pytest.mark.parametrize(
    ("from_domain", "signer"),
    [
        # Siblings under one organisation: DMARC's relaxed rule would align them; we do not.
        ("billing.brightenergy.example", "mail.brightenergy.example"),
        # Two Microsoft 365 tenants: the public suffix list would make them one organisation.
        ("brightenergy.onmicrosoft.example", "attacker.onmicrosoft.example"),
    ],
)
def test_a_pass_for_a_sibling_domain_does_not_vouch_for_the_from_domain(
    from_domain: str, signer: str
) -> None:
    message = _message(f"{OURS}; dkim=pass header.d={signer}; spf=pass smtp.mailfrom=b@{signer}")
    found = authenticate(message, from_domain, [OURS])
    assert found.verdict == "unverified"
    assert from_domain in found.reason
