"""Stories of forged mail: our MTA's Authentication-Results decide, under each party's policy.

Elexon's MTA (mx.elexon.example) checks SPF, DKIM and DMARC and prepends its verdict.
Anyone can write a From header, and anyone can write an Authentication-Results field
too; only our MTA's topmost one is believed (reliability.md B48, B49, F18).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.models import Event, Message
from gateway.settings import load
from gateway.worker import reset_for_reprocess
from tests.e2e.desk import RAISER, STAFF, STAFF_DESK, Desk, mail, reply_to
from tests.support import REPO, free_port, settings_text

OUR_MTA = "mx.elexon.example"
BODY = """Summary: the DIP rejects our IF-041 submissions since 09:15
Impact: about 200 customers' reads are not settling
MPAN: 1052601815905
Transaction ID: T-IF-041-1009012345-REGS-20261127-0123456789ABCDEF
Evidence: the DIP portal shows status REJECTED with error code SP101 at 27/11/2026 09:15
"""


def _case(result: str | None = None, subject: str = "DIP rejects IF-041") -> bytes:
    """Bright Energy raises a case; ``result`` is what our MTA wrote about it, if anything."""
    headers = {"Authentication-Results": f"{OUR_MTA}; {result}"} if result else None
    return mail(sender=RAISER, subject=subject, body=BODY, headers=headers)


def _desk(tmp_path: Path, *, raiser_policy: str | None = None, policy: str = "strict") -> Desk:
    parties = (REPO / "parties.toml").read_text()
    if raiser_policy:
        parties = parties.replace(
            'domains = ["brightenergy.example"]',
            f'domains = ["brightenergy.example"]\nauthentication = "{raiser_policy}"',
        )
    (tmp_path / "parties.toml").write_text(parties)
    config = tmp_path / "settings.toml"
    config.write_text(
        settings_text(tmp_path, free_port(), parties=tmp_path / "parties.toml")
        + f'\n[authentication]\nauthserv_ids = ["{OUR_MTA}"]\npolicy = "{policy}"\n'
    )
    return Desk(load(config))


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    desk = _desk(tmp_path)
    yield desk
    desk.close()


def test_a_verified_party_raises_a_case_as_usual(desk: Desk) -> None:
    done = desk.receive(_case("dmarc=pass header.from=brightenergy.example"))
    assert done.outcome == "case_created", done.reason
    assert {s.template for s in desk.new_mail()} == {"acknowledgement", "staff_notice"}
    with desk.app.sessions() as session:
        assert session.scalar(select(Message.authentication)) == "pass"


def test_a_forged_from_with_a_forged_pass_under_our_fail_is_quarantined_unanswered(
    desk: Desk,
) -> None:
    forged = mail(
        sender=RAISER,
        subject="DIP rejects IF-041",
        body=BODY,
        headers={
            # Our MTA prepended its verdict above the one the forger wrote.
            "Authentication-Results": f"{OUR_MTA}; spf=fail smtp.mailfrom=brightenergy.example; "
            "dkim=none; dmarc=fail header.from=brightenergy.example",
            "X-Filler": "x",
        },
    )
    forged = forged.replace(
        b"X-Filler: x",
        f"Authentication-Results: {OUR_MTA}; dmarc=pass header.from=brightenergy.example".encode(),
    )
    done = desk.receive(forged)
    assert done.outcome == "quarantined"
    assert done.reason is not None
    assert f"sender {RAISER} not verified: dmarc=fail" in done.reason
    assert desk.new_mail() == []  # nothing to the real party, nothing to the forger


def test_strict_policy_holds_mail_nobody_verified_until_staff_release_it(desk: Desk) -> None:
    done = desk.receive(_case())
    assert done.outcome == "quarantined"
    assert done.reason == (
        f"sender {RAISER} not verified: no Authentication-Results from {OUR_MTA}"
    )
    assert desk.new_mail() == []
    # The analyst phones Bright Energy, who confirm they sent it, and releases it.
    with desk.app.sessions.begin() as session:
        reset_for_reprocess(session, done.message_row_id, release=True)
    (released,) = desk.app.worker.process([done.message_row_id])
    assert released.outcome == "case_created", released.reason


def test_a_dns_error_is_never_a_pass(desk: Desk) -> None:
    done = desk.receive(_case("dmarc=temperror header.from=brightenergy.example"))
    assert done.outcome == "quarantined"
    assert done.reason is not None and "dmarc=temperror" in done.reason


def test_a_relaxed_party_gets_in_unverified_but_nothing_automatic_goes_to_parties(
    tmp_path: Path,
) -> None:
    desk = _desk(tmp_path, raiser_policy="relaxed")
    try:
        done = desk.receive(_case())
        assert done.outcome == "case_created", done.reason
        sent = desk.new_mail()
        # Staff hear about the case; the acknowledgement to the (claimed) sender is withheld.
        assert [(s.template, s.to) for s in sent] == [("staff_notice", [STAFF_DESK])]
        with desk.app.sessions() as session:
            withheld = session.scalars(
                select(Event.detail).where(Event.kind == "acknowledgement_withheld")
            ).all()
            verdict = session.scalar(select(Message.authentication))
        assert len(withheld) == 1 and "sender not verified" in withheld[0]
        assert verdict == "unverified"
        # A fail is a fail even under the relaxed policy.
        failed = desk.receive(
            _case("dmarc=fail header.from=brightenergy.example", subject="Another one")
        )
        assert failed.outcome == "quarantined"
    finally:
        desk.close()


def test_without_an_mta_to_trust_nothing_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(tmp_path, free_port()))
    desk = Desk(load(config))
    try:
        done = desk.receive(_case())
        assert done.outcome == "case_created", done.reason
        with desk.app.sessions() as session:
            assert session.scalar(select(Message.authentication)) is None
    finally:
        desk.close()


def test_staff_commands_need_a_verified_sender_even_under_a_relaxed_policy(
    tmp_path: Path,
) -> None:
    desk = _desk(tmp_path, policy="relaxed")
    try:
        raised = desk.receive(_case("dmarc=pass header.from=brightenergy.example"))
        assert raised.outcome == "case_created", raised.reason
        notice = next(s for s in desk.new_mail() if s.template == "staff_notice")
        # Someone outside writes as Elexon staff, answering the notice they got hold of.
        forged = desk.receive(reply_to(notice, sender=STAFF, body="#close\n"))
        assert forged.outcome == "quarantined"
        assert forged.reason is not None and f"sender {STAFF} not verified" in forged.reason
        assert desk.case(raised.reference or "")["state"] != "closed"
    finally:
        desk.close()
