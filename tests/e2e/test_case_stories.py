"""Service-desk stories: how a case runs itself, told through the real pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from gateway.models import Case, utcnow
from gateway.settings import Settings
from gateway.worker import reset_for_reprocess
from tests.e2e.desk import DCC_DESK, RAISER, STAFF, STAFF_DESK, Desk, mail, reply_to

CASE_BODY = """Summary: the DIP rejects our IF-041 submissions since 09:15
Impact: about 200 customers' reads are not settling
MPAN: 1052601815905
Transaction ID: T-IF-041-1009012345-REGS-20261127-0123456789ABCDEF
Evidence: the DIP portal shows status REJECTED with error code SP101 at 27/11/2026 09:15
"""


@pytest.fixture
def desk(settings: Settings) -> Iterator[Desk]:
    desk = Desk(settings)
    yield desk
    desk.close()


def raise_case(desk: Desk, body: str = CASE_BODY, sender: str = RAISER) -> str:
    done = desk.receive(mail(sender=sender, subject="DIP rejects IF-041", body=body))
    assert done.outcome == "case_created", done.reason
    assert done.reference is not None
    return done.reference


def only(sent: list, template: str, to: str | None = None):  # type: ignore[no-untyped-def]
    found = [s for s in sent if s.template == template and (to is None or to in s.to)]
    assert len(found) == 1, (
        f"expected one {template} mail, got {[(s.template, s.to) for s in sent]}"
    )
    return found[0]


def test_raise_assign_to_dcc_their_ticket_number_resolve_and_close(desk: Desk) -> None:
    ref = raise_case(desk)
    first = desk.new_mail()
    ack = only(first, "acknowledgement", RAISER)
    assert f"[{ref}]" in ack.message["Subject"]
    notice = only(first, "staff_notice", STAFF_DESK)

    # Elexon's analyst answers the staff notice from Outlook: assign it to the DCC.
    done = desk.receive(reply_to(notice, sender=STAFF, body="#assign DCC\n"))
    assert done.outcome == "case_updated", done.reason
    parent = desk.case(ref)
    assert parent["state"] == "assigned"
    (child_ref,) = parent["children"]
    outbound = only(desk.new_mail(), "outbound_case", DCC_DESK)
    assert f"[{child_ref}]" in outbound.message["Subject"]
    assert "1052601815905" in outbound.text and "T-IF-041-1009012345" in outbound.text
    assert desk.case(child_ref)["parent"] == ref

    # The parent cannot close while the child is open.
    desk.receive(reply_to(notice, sender=STAFF, body="#close"))
    refused = only(desk.new_mail(), "command_help", STAFF)
    assert "child case(s) still open" in refused.text
    assert desk.case(ref)["state"] == "assigned"

    # DCC's ServiceNow answers with its own incident number…
    done = desk.receive(
        reply_to(
            outbound,
            sender="noreply.servicenow@dcc.example",
            body="Thank you. We have logged INC0012345 for this.\n\nRef:MSG0098765_abcdef",
        )
    )
    assert done.outcome == "case_updated" and done.reference == child_ref, done.reason
    assert "INC0012345" in desk.case(child_ref)["external_references"]
    only(desk.new_mail(), "staff_notice", STAFF_DESK)

    # …and later writes again carrying only that number, in a new thread.
    done = desk.receive(
        mail(
            sender="servicedesk@dcc.example",
            subject="INC0012345 has been resolved",
            body="Incident INC0012345 has been resolved: the DCC adapter config was corrected.",
        )
    )
    assert done.reference == child_ref and done.outcome == "case_updated", done.reason
    child = desk.case(child_ref)
    assert child["state"] == "resolved"
    assert [m["matched_by"] for m in child["messages"] if m["direction"] == "in"][-1] == (
        "external_reference"
    )
    resolved = desk.new_mail()
    only(resolved, "staff_notice", STAFF_DESK)
    resolution = only(resolved, "resolution", RAISER)
    assert "adapter config was corrected" in resolution.text
    assert desk.case(ref)["state"] == "resolved"

    # Staff close the original case: the raiser gets the closure notice with the summary.
    done = desk.receive(reply_to(notice, sender=STAFF, body="#close\n"))
    assert done.outcome == "case_updated", done.reason
    closure = only(desk.new_mail(), "closure", RAISER)
    assert "adapter config was corrected" in closure.text
    assert closure.message["In-Reply-To"] is not None  # it stays in the raiser's thread
    story = desk.case(ref)
    assert story["state"] == "closed"
    kinds = [e["kind"] for e in story["events"]]
    for kind in (
        "case_raised",
        "child_raised",
        "child_resolved",
        "resolution_queued",
        "closure_queued",
    ):
        assert kind in kinds


@pytest.mark.parametrize(
    ("client", "body"),
    [
        (
            "outlook-de",
            "Die Werte sind jetzt korrekt, danke.\n\nMit freundlichen Grüßen\nOps\n\n"
            "Von: Cross-Party Service Desk <cpsd@elexon.example>\n"
            "Gesendet: Freitag, 27. November 2026 10:05\nAn: ops@brightenergy.example\n"
            "Betreff: [{ref}] DIP rejects IF-041\n\nHello Bright Energy Supply,\nThank you.\n",
        ),
        (
            "outlook-fr",
            "Les valeurs sont correctes maintenant.\n\n"
            "De : Cross-Party Service Desk <cpsd@elexon.example>\n"
            "Envoyé : vendredi 27 novembre 2026 10:05\nÀ : ops@brightenergy.example\n"
            "Objet : [{ref}] DIP rejects IF-041\n\nHello Bright Energy Supply,\nThank you.\n",
        ),
        (
            "gmail",
            "The values are correct now.\n\n"
            "On Fri, 27 Nov 2026 at 10:05, Cross-Party Service Desk <cpsd@elexon.example> wrote:\n"
            "> Hello Bright Energy Supply,\n> Thank you.\n",
        ),
        (
            "apple-mail",
            "The values are correct now.\n\nSent from my iPhone\n\n"
            "> On 27 Nov 2026, at 10:05, Cross-Party Service Desk <cpsd@elexon.example> wrote:\n"
            ">\n> Hello Bright Energy Supply,\n> Thank you.\n",
        ),
    ],
)
def test_a_reply_from_any_client_lands_on_its_case_without_the_quoted_history(
    desk: Desk, client: str, body: str
) -> None:
    ref = raise_case(desk)
    ack = only(desk.new_mail(), "acknowledgement", RAISER)
    done = desk.receive(reply_to(ack, sender=RAISER, body=body.format(ref=ref)))
    assert (done.outcome, done.reference) == ("case_updated", ref), done.reason
    told = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    assert body.splitlines()[0] in told.text
    assert "Hello Bright Energy Supply" not in told.text


def test_a_spoofed_reply_from_another_party_is_quarantined_and_the_raiser_sees_nothing(
    desk: Desk,
) -> None:
    ref = raise_case(desk)
    desk.new_mail()
    done = desk.receive(
        mail(
            sender="ops@meadowpower.example",
            subject=f"RE: [{ref}] DIP rejects IF-041",
            body="Please send us the MPAN details on this case.",
        )
    )
    assert done.outcome == "quarantined"
    assert "meadowpower.example" in (done.reason or "") and ref in (done.reason or "")
    assert desk.new_mail() == []  # nobody outside Elexon hears anything
    assert [m.subject for m in desk.quarantined()] == [f"RE: [{ref}] DIP rejects IF-041"]
    assert len([m for m in desk.case(ref)["messages"] if m["direction"] == "in"]) == 1


def test_an_incomplete_case_asks_for_exactly_what_is_missing(desk: Desk) -> None:
    ref = raise_case(desk, body="Hi, something is wrong with the DIP. Please look.\n")
    (asked,) = [s for s in desk.new_mail() if s.to == [RAISER]]
    assert asked.template == "info_required"
    assert "impact" in asked.text.lower() and "reference" in asked.text.lower()
    assert desk.case(ref)["state"] == "info_required"
    done = desk.receive(reply_to(asked, sender=RAISER, body=CASE_BODY))
    assert done.reference == ref
    assert desk.case(ref)["state"] == "triage"


def test_staff_redirect_points_the_raiser_at_the_right_desk(desk: Desk) -> None:
    ref = raise_case(desk)
    notice = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    desk.receive(reply_to(notice, sender=STAFF, body="#redirect mpas\n"))
    redirect = only(desk.new_mail(), "redirect", RAISER)
    assert "MPAS Help Desk" in redirect.text
    assert desk.case(ref)["state"] == "redirected"


def test_staff_text_goes_to_the_raiser_as_an_update_and_notes_stay_internal(desk: Desk) -> None:
    ref = raise_case(desk)
    notice = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    desk.receive(reply_to(notice, sender=STAFF, body="We are looking at the DIP logs now.\n"))
    update = only(desk.new_mail(), "update", RAISER)
    assert "looking at the DIP logs" in update.text
    assert f"[{ref}]" in update.message["Subject"]
    desk.receive(reply_to(notice, sender=STAFF, body="#note rang their ops lead\n#priority P2\n"))
    assert desk.new_mail() == []
    shown = desk.case(ref)
    assert shown["priority"] == "P2"
    assert any(
        e["kind"] == "note" and "rang their ops lead" in e["detail"] for e in shown["events"]
    )


def test_a_staff_reply_all_reaches_the_raiser_once_and_is_recorded(desk: Desk) -> None:
    ref = raise_case(desk)
    desk.new_mail()
    # Staff answer the raiser from Outlook with reply-all: the raiser gets it straight
    # from staff, and the shared mailbox's copy reaches the gateway.
    reply_all = mail(
        sender=STAFF,
        to=f"{RAISER}, cpsd@elexon.example",
        subject=f"RE: [{ref}] DIP rejects IF-041",
        body="We have restarted the IF-041 adapter; please resubmit.\n",
    )
    done = desk.receive(reply_all)
    assert done.outcome == "case_updated" and done.reference == ref, done.reason
    assert [s.template for s in desk.new_mail()] == []  # no second copy to the raiser
    shown = desk.case(ref)
    recorded = [e for e in shown["events"] if e["kind"] == "staff_reply_recorded"]
    assert len(recorded) == 1 and RAISER in recorded[0]["detail"]


def test_an_unknown_command_changes_nothing_and_lists_the_valid_ones(desk: Desk) -> None:
    ref = raise_case(desk)
    notice = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    before = desk.case(ref)
    desk.receive(reply_to(notice, sender=STAFF, body="#triage\n#escalate now\n"))
    helped = only(desk.new_mail(), "command_help", STAFF)
    assert "#escalate is not a command" in helped.text
    assert "#assign <party>" in helped.text
    assert desk.case(ref)["state"] == before["state"] == "raised"


def test_a_refused_transition_is_reported_to_staff(desk: Desk) -> None:
    ref = raise_case(desk)
    notice = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    desk.receive(reply_to(notice, sender=STAFF, body="#close\n"))
    helped = only(desk.new_mail(), "command_help", STAFF)
    assert "must be resolved before it is closed" in helped.text
    assert desk.case(ref)["state"] == "raised"


def test_a_reply_to_a_closed_case_reopens_it_then_later_starts_a_linked_case(desk: Desk) -> None:
    ref = raise_case(desk)
    notice = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    desk.receive(reply_to(notice, sender=STAFF, body="#resolve fixed\n#close\n"))
    closure = only(desk.new_mail(), "closure", RAISER)
    done = desk.receive(reply_to(closure, sender=RAISER, body="It is failing again since 14:00."))
    assert done.reference == ref
    assert desk.case(ref)["state"] == "triage"

    desk.receive(reply_to(notice, sender=STAFF, body="#resolve fixed again\n#close\n"))
    closure = only(desk.new_mail(), "closure", RAISER)
    with desk.app.sessions.begin() as session:
        case = session.scalar(select(Case).where(Case.reference == ref))
        assert case is not None and case.closed_at is not None
        case.closed_at = utcnow() - timedelta(days=30)
    done = desk.receive(reply_to(closure, sender=RAISER, body="Failing once more, sorry."))
    assert done.outcome == "case_created" and done.reference != ref
    assert f"follows closed case {ref}" in str(desk.case(done.reference or "")["events"])


def test_a_staff_reply_from_the_shared_mailbox_sent_folder_is_recorded_not_relayed(
    desk: Desk,
) -> None:
    ref = raise_case(desk)
    ack = only(desk.new_mail(), "acknowledgement", RAISER)
    staff_reply = mail(
        sender="cpsd@elexon.example",
        to=RAISER,
        subject=f"RE: [{ref}] DIP rejects IF-041",
        body="We have asked the DIP operator to replay the messages.",
        in_reply_to=ack.message["Message-ID"],
    )
    done = desk.receive(staff_reply, sent_copy=True)
    assert done.outcome == "case_updated", done.reason
    assert desk.new_mail() == []
    assert "staff_reply_recorded" in [e["kind"] for e in desk.case(ref)["events"]]


def test_auto_replies_are_recorded_and_never_answered(
    desk: Desk, make_mail: Callable[..., bytes]
) -> None:
    ref = raise_case(desk)
    ack = only(desk.new_mail(), "acknowledgement", RAISER)
    raw = reply_to(ack, sender=RAISER, body="I am out of the office until Monday.")
    raw = raw.replace(
        b"Subject: RE:", b"Auto-Submitted: auto-replied\nSubject: Automatic reply: RE:"
    )
    done = desk.receive(raw)
    assert (done.outcome, done.reference) == ("case_updated", ref)
    assert desk.new_mail() == []
    assert "automatic_message_received" in [e["kind"] for e in desk.case(ref)["events"]]


def _dsn(ack_message_id: str | None, recipient: str) -> bytes:
    returned = f"Message-ID: {ack_message_id}\r\n" if ack_message_id else ""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.brightenergy.example>\r\n"
        "To: cpsd@elexon.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.brightenergy.example>\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your "
        "message could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.brightenergy.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}Subject: x\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize("by_message_id", [True, False])
def test_a_bounce_marks_our_mail_bounced_and_is_never_answered(
    desk: Desk, by_message_id: bool
) -> None:
    ref = raise_case(desk)
    ack = only(desk.new_mail(), "acknowledgement", RAISER)
    done = desk.receive(_dsn(ack.message["Message-ID"] if by_message_id else None, RAISER))
    assert done.outcome == "ignored"
    assert f"outbox row {ack.row_id} (acknowledgement)" in (done.reason or "")
    (alert,) = desk.new_mail()  # staff hear of it; the bouncing address hears nothing
    assert alert.template == "staff_alert" and alert.to == [STAFF_DESK]
    assert "5.1.1" in alert.text
    assert [s.row_id for s in desk.outbox() if s.template == "acknowledgement"] == [ack.row_id]
    with desk.app.sessions() as session:
        from gateway.models import Outbox

        row = session.get(Outbox, ack.row_id)
        assert row is not None and row.status == "bounced" and "5.1.1" in (row.last_error or "")
    assert "acknowledgement_bounced" in [e["kind"] for e in desk.case(ref)["events"]]
    assert len(desk.case(ref)["children"]) == 0


def test_a_forward_with_our_reference_updates_and_one_without_raises_a_new_case(desk: Desk) -> None:
    ref = raise_case(desk)
    desk.new_mail()
    forwarded = mail(
        sender=RAISER,
        subject=f"FW: [{ref}] DIP rejects IF-041",
        body="Forwarding the DIP portal view.\n\n---------- Forwarded message ----------\n"
        "From: dip@dip-ops.example\nStatus: REJECTED\n",
    )
    assert desk.receive(forwarded).reference == ref
    fresh = mail(sender=RAISER, subject="FW: settlement run late", body=CASE_BODY)
    done = desk.receive(fresh)
    assert done.outcome == "case_created" and done.reference != ref


def test_a_reply_that_matches_nothing_is_a_new_case_noting_it_may_belong_elsewhere(
    desk: Desk,
) -> None:
    done = desk.receive(
        mail(
            sender=RAISER,
            subject="RE: our call this morning",
            body=CASE_BODY,
            in_reply_to="<lost-thread@brightenergy.example>",
        )
    )
    assert done.outcome == "case_created"
    raised = [e for e in desk.case(done.reference or "")["events"] if e["kind"] == "case_raised"]
    assert "may belong to another case" in raised[0]["detail"]


def test_assign_passes_the_raisers_evidence_on_to_the_party(desk: Desk) -> None:
    from email.message import EmailMessage

    raised = EmailMessage()
    raised["From"] = RAISER
    raised["To"] = "cpsd@elexon.example"
    raised["Subject"] = "IF-041 rejected"
    raised["Message-ID"] = "<with-evidence@brightenergy.example>"
    raised.set_content(CASE_BODY)
    raised.add_attachment(
        b"transaction,status\nT-1,REJECTED\n",
        maintype="text",
        subtype="csv",
        filename="dip-status.csv",
    )
    done = desk.receive(raised.as_bytes())
    notice = only(desk.new_mail(), "staff_notice", STAFF_DESK)
    desk.receive(reply_to(notice, sender=STAFF, body="#assign DCC"))
    outbound = only(desk.new_mail(), "outbound_case", DCC_DESK)
    files = {p.get_filename(): p.get_content() for p in outbound.message.iter_attachments()}
    assert files == {"dip-status.csv": "transaction,status\nT-1,REJECTED\n"}
    assert done.reference is not None


def test_a_sent_folder_copy_that_matches_no_case_raises_nothing(desk: Desk) -> None:
    done = desk.receive(
        mail(
            sender="cpsd@elexon.example",
            to=RAISER,
            subject="Hello from the desk",
            body="A note sent from the shared mailbox.",
        ),
        sent_copy=True,
    )
    assert done.outcome == "ignored" and "sent folder" in (done.reason or "")
    assert desk.outbox() == []


def test_a_sender_raising_cases_faster_than_a_person_could_is_held_for_staff(
    settings: Settings,
) -> None:
    # B51: a party's script misfires (or someone walks our references) and mails a new
    # case every few seconds. Past the hourly limit the new cases wait in quarantine;
    # replies on existing cases, other senders and staff are not held.
    limited = dataclasses.replace(settings.gateway, max_new_cases_per_sender_per_hour=3)
    desk = Desk(dataclasses.replace(settings, gateway=limited))
    now = {"Date": format_datetime(utcnow())}  # written just now, as a flood is

    def new_case() -> bytes:
        return mail(sender=RAISER, subject="DIP rejects IF-041", body=CASE_BODY, headers=now)

    try:
        refs = []
        for _ in range(3):
            done = desk.receive(new_case())
            assert done.outcome == "case_created" and done.reference
            refs.append(done.reference)
        held = desk.receive(new_case())
        assert held.outcome == "quarantined"
        assert held.reason == (
            f"rate limit: 3 new cases from {RAISER} in the last hour (at most 3); "
            "held for staff to release"
        )
        acks = [s for s in desk.new_mail() if s.template == "acknowledgement"]
        assert len(acks) == 3  # none for the held one
        assert raise_case(desk, sender="ops@meadowpower.example")
        update = desk.receive(reply_to(acks[0], sender=RAISER, body="Now 40 MPANs."))
        assert update.outcome == "case_updated" and update.reference == refs[0]
        # An analyst sees it is a real case and lets it through.
        with desk.app.sessions.begin() as session:
            reset_for_reprocess(session, held.message_row_id, release=True)
        (released,) = desk.app.worker.process([held.message_row_id])
        assert released.outcome == "case_created", released.reason
        # A shared mailbox's backlog, written hours ago, is history, not a flood.
        backlog = desk.receive(mail(sender=RAISER, subject="Yesterday's rejects", body=CASE_BODY))
        assert backlog.outcome == "case_created", backlog.reason
    finally:
        desk.close()


def test_a_reply_to_elsewhere_is_shown_on_the_case_and_never_written_to(desk: Desk) -> None:
    # B50: From is the party, Reply-To someone else. Our mail goes to the From address
    # (and the case's parties); the difference is on the case for a person to judge.
    raw = mail(
        sender=RAISER,
        subject="DIP rejects IF-041",
        body=CASE_BODY,
        headers={"Reply-To": "collector@elsewhere.example"},
    )
    done = desk.receive(raw)
    assert done.outcome == "case_created", done.reason
    sent = desk.new_mail()
    assert not [s for s in sent if "collector@elsewhere.example" in s.to]
    ack = only(sent, "acknowledgement", RAISER)
    note = "Reply-To collector@elsewhere.example differs from From; mail goes to " + RAISER
    (raised,) = [e for e in desk.case(done.reference or "")["events"] if e["kind"] == "case_raised"]
    assert note in raised["detail"]
    # The same on a later update from the party.
    update = mail(
        sender=RAISER,
        subject=f"RE: {ack.message['Subject']}",
        body="Now 40 MPANs.",
        headers={"Reply-To": "collector@elsewhere.example"},
        in_reply_to=ack.message["Message-ID"],
    )
    assert desk.receive(update).outcome == "case_updated"
    events = desk.case(done.reference or "")["events"]
    received = [e["detail"] for e in events if e["kind"] == "message_received"]
    assert len(received) == 2 and note not in received[0] and note in received[1]
    assert not [s for s in desk.new_mail() if "collector@elsewhere.example" in s.to]


def test_our_own_acknowledgement_coming_back_raises_nothing_and_is_not_answered(
    desk: Desk,
) -> None:
    # B56: the party's mailbox forwards everything back to us, or a relay returns it.
    ref = raise_case(desk)
    ack = only(desk.new_mail(), "acknowledgement", RAISER)
    with desk.app.sessions() as session:
        from gateway.models import Outbox

        row = session.get(Outbox, ack.row_id)
        assert row is not None
        raw = row.raw
    done = desk.receive(raw)
    assert done.outcome == "ignored" and "X-CPSD-Loop" in (done.reason or "")

    # A relay that strips our loop header still gives back our Message-ID.
    stripped = b"\r\n".join(
        line for line in raw.split(b"\r\n") if not line.startswith(b"X-CPSD-Loop:")
    )
    assert stripped != raw
    done = desk.receive(stripped)
    assert done.outcome == "ignored", done.reason
    assert f"outbox row {ack.row_id}" in (done.reason or "")

    assert desk.new_mail() == []
    with desk.app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1
    assert [e["kind"] for e in desk.case(ref)["events"]].count("message_received") == 1


@pytest.mark.parametrize(
    ("header", "named"),
    [
        (("Precedence", "bulk"), "Precedence: bulk"),
        (("List-Id", "<ops.brightenergy.example>"), "List-Id"),
        (("X-Loop", "yes"), "X-Loop"),
    ],
)
def test_bulk_mail_is_recorded_on_its_case_or_kept_aside_and_never_answered(
    desk: Desk, header: tuple[str, str], named: str
) -> None:
    # B54: our routing raises no case from list or bulk mail (a machine sent it), but a
    # bulk reply on a known case is still the party's word on it.
    ref = raise_case(desk)
    ack = only(desk.new_mail(), "acknowledgement", RAISER)

    stray = mail(sender=RAISER, subject="Daily DIP report", body=CASE_BODY, headers=dict([header]))
    done = desk.receive(stray)
    assert done.outcome == "ignored" and named in (done.reason or ""), done.reason
    with desk.app.sessions() as session:
        from gateway.models import Message

        row = session.get(Message, done.message_row_id)
        assert row is not None and desk.app.store.get(session, row.sha256) == stray

    on_case = mail(
        sender=RAISER,
        subject=f"RE: {ack.message['Subject']}",
        body="Still failing this morning.",
        in_reply_to=ack.message["Message-ID"],
        headers=dict([header]),
    )
    done = desk.receive(on_case)
    assert done.outcome == "case_updated" and done.reference == ref, done.reason
    assert [s for s in desk.new_mail() if RAISER in s.to] == []


def test_the_audit_trail_keeps_its_order_when_the_clock_steps_back(desk: Desk) -> None:
    # F17: the host's clock is stepped back an hour (NTP after a bad start, a restored VM)
    # between two things that happen to a case. The trail shows them as they happened.
    ref = raise_case(desk)
    before = [e["kind"] for e in desk.case(ref)["events"]]
    with desk.app.sessions.begin() as session:
        from gateway import cases

        case = cases.by_reference(session, ref)
        assert case is not None
        cases.record(
            session, case, "note", actor=STAFF, at=utcnow() - timedelta(hours=1), detail="later"
        )
    events = desk.case(ref)["events"]
    assert [e["kind"] for e in events] == [*before, "note"]
    assert events[-1]["at"] < events[0]["at"]  # its clock said earlier; it came later
