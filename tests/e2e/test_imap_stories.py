"""Service-desk stories through the shared mailbox: staff replying from Outlook, mail that
arrives twice by two roads.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Callable
from pathlib import Path

from tests.dovecot import Dovecot
from tests.e2e.conftest import SENT, db_count, party_mail, smtp_port
from tests.e2e.server import GatewayProcess, cli, cli_json, wait_for

RAISER = "ops@brightenergy.example"
QUARANTINE = "CPSD/Quarantine"
PROCESSED = "CPSD/Processed"


def poll_once(config: Path) -> dict[str, int]:
    (result,) = cli_json(config, "poll", "--once")
    assert result["error"] is None, result["error"]
    return {k: result[k] for k in ("imported", "duplicates", "quarantined", "failed")}


def staff_reply(reference: str, in_reply_to: str, body: str, number: int) -> bytes:
    """What Outlook files in the shared mailbox's Sent Items when staff answer from it."""
    return (
        "From: Jo Bloggs <jo.bloggs@elexon.example>\r\n"
        f"To: {RAISER}\r\n"
        f"Subject: RE: [{reference}] DIP rejects IF-041 for batch 1\r\n"
        "Date: Fri, 27 Nov 2026 11:00:00 +0000\r\n"
        f"Message-ID: <staff-{number}@elexon.example>\r\n"
        f"In-Reply-To: {in_reply_to}\r\n"
        f"References: <imap-1@brightenergy.example> {in_reply_to}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n" + body.replace("\n", "\r\n")
    ).encode()


def test_a_staff_reply_in_sent_items_is_recorded_on_its_case_and_its_commands_act(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config(sent_folder=SENT)
    # Outlook's Sent Items already holds older mail: history, not something to act on now.
    dovecot.append(SENT, [party_mail(99, sender="jo.bloggs@elexon.example")])
    dovecot.append("INBOX", [party_mail(1)])
    assert poll_once(config)["imported"] == 1  # the party raises CPSD-000001 through IMAP
    (case,) = cli_json(config, "cases", "list")
    reference = case["reference"]
    before = cli_json(config, "outbox", "list")
    ack = next(o for o in before if o["template"] == "acknowledgement")
    assert ack["to"] == [RAISER]

    # Jo answers from the shared mailbox in Outlook: the party gets it straight from
    # Exchange, and a copy lands in Sent Items. The gateway reads the copy.
    dovecot.append(
        SENT,
        [
            staff_reply(reference, ack["message_id"], "#priority P2\n#note checked with DCC\n", 1),
            staff_reply(
                reference,
                ack["message_id"],
                "We have asked the DIP operator to replay the rejected messages.\n",
                2,
            ),
        ],
    )
    assert poll_once(config)["imported"] == 2

    shown = cli_json(config, "case", "show", reference)
    incoming = {m["message_id"] for m in shown["messages"] if m["direction"] == "in"}
    assert {"<staff-1@elexon.example>", "<staff-2@elexon.example>"} <= incoming
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds.count("staff_sent_copy_received") == 2
    assert "note" in kinds and "priority_changed" in kinds
    assert shown["priority"] == "P2"
    assert "staff_reply_recorded" in kinds
    # Never relayed: the party already has Jo's reply; nothing new was queued for anyone.
    assert cli_json(config, "outbox", "list") == before
    # Sent Items is the staff's own folder: read, never moved; older mail never imported.
    assert dovecot.count(SENT) == 3
    assert db_count(config, "select count(*) from messages") == 3
    assert poll_once(config) == {"imported": 0, "duplicates": 0, "quarantined": 0, "failed": 0}


def test_the_same_message_by_smtp_and_by_imap_is_one_message(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config()
    # The mailbox server's copy carries its own trace headers; the content is the same.
    trace = (
        b"Return-Path: <ops@brightenergy.example>\r\nDelivered-To: cpsd@elexon.example\r\n"
        b"Received: from mx.brightenergy.example by outlook.example; Fri, 27 Nov 2026\r\n"
    )
    smtp_first, imap_first, together = party_mail(1), party_mail(2), party_mail(3)

    def smtp(raw: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", smtp_port(config), timeout=10) as client:
            client.sendmail(RAISER, ["cpsd@elexon.example"], raw)

    def messages() -> int:
        return db_count(config, "select count(*) from messages")

    gateway = GatewayProcess(config, smtp_port(config)).start()
    try:
        smtp(smtp_first)
        assert wait_for(lambda: messages() == 1)
        dovecot.append("INBOX", [trace + smtp_first])
        assert wait_for(lambda: dovecot.count("INBOX") == 0)

        dovecot.append("INBOX", [trace + imap_first])
        assert wait_for(lambda: messages() == 2)
        smtp(imap_first)

        both = threading.Thread(target=dovecot.append, args=("INBOX", [trace + together]))
        both.start()
        smtp(together)
        both.join()
        assert wait_for(lambda: dovecot.count("INBOX") == 0 and messages() == 3), (
            dovecot.count("INBOX"),
            messages(),
            gateway.log.read_text(),
            dovecot.log(),
        )
        assert wait_for(
            lambda: db_count(config, "select count(*) from messages where status='received'") == 0
        )
    finally:
        assert gateway.stop() == 0
    assert messages() == 3
    assert db_count(config, "select count(*) from cases") == 3
    acks = [o for o in cli_json(config, "outbox", "list") if o["template"] == "acknowledgement"]
    assert len(acks) == 3
    assert dovecot.count("CPSD/Processed") == 3


def test_a_message_staff_release_leaves_the_quarantine_folder_on_the_server(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config()
    stranger = "newcomer@unlisted-energy.example"
    # Two messages claim one Message-ID; only the one staff release may leave quarantine.
    dovecot.append(
        "INBOX",
        [
            party_mail(7, sender=stranger, message_id="<same@unlisted-energy.example>"),
            party_mail(
                8,
                sender=stranger,
                message_id="<same@unlisted-energy.example>",
                body="Summary: something else entirely\n",
            ),
        ],
    )
    assert poll_once(config)["quarantined"] == 2
    assert dovecot.count(QUARANTINE) == 2
    held = cli_json(config, "quarantine", "list")
    first = next(h for h in held if "batch 7" in (h["subject"] or ""))

    # The analyst checks with the newcomer, who is a new supplier, and lets the case in.
    done = cli(config, "quarantine", "release", str(first["id"]))
    assert "case_created" in done.stdout
    assert f"ops: {QUARANTINE}: moved to {PROCESSED}" in done.stdout
    assert dovecot.count(QUARANTINE) == 1
    (left,) = dovecot.messages(QUARANTINE)
    assert b"something else entirely" in left
    assert any(b"batch 7" in m for m in dovecot.messages(PROCESSED))


def test_a_release_says_plainly_when_the_mailbox_cannot_be_reached(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config()
    dovecot.append("INBOX", [party_mail(9, sender="newcomer@unlisted-energy.example")])
    assert poll_once(config)["quarantined"] == 1
    (held,) = cli_json(config, "quarantine", "list")
    # The mailbox has moved since (a new port): the release itself still happens.
    config.write_text(config.read_text().replace(f"port = {dovecot.port}", "port = 9"))
    done = cli(config, "quarantine", "release", str(held["id"]))
    assert "case_created" in done.stdout
    assert f"ops: {QUARANTINE}: mailbox unreachable" in done.stdout
    assert "the copy stays there" in done.stdout
    assert dovecot.count(QUARANTINE) == 1


def test_a_microsoft_365_mailbox_takes_exchange_onlines_verdict_on_each_sender(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    # The shared mailbox lives in Exchange Online, which writes Authentication-Results
    # without an authserv-id, above any the message arrived with.
    config = imap_config(extra='authentication_results = "microsoft-365"')

    def exchange(dmarc: str) -> bytes:
        return (
            "Authentication-Results: spf=pass (sender IP is 40.107.22.51) "
            "smtp.mailfrom=brightenergy.example; dkim=pass (signature was verified) "
            f"header.d=brightenergy.example;dmarc={dmarc} action=none "
            "header.from=brightenergy.example;compauth=pass reason=100\r\n"
        ).encode()

    genuine = exchange("pass") + party_mail(1)
    # A forger's own "pass" sits under Exchange's "fail": only the topmost is read.
    forged = exchange("fail") + exchange("pass") + party_mail(2)
    dovecot.append("INBOX", [genuine, forged])
    assert poll_once(config) == {"imported": 1, "duplicates": 0, "quarantined": 1, "failed": 0}
    (case,) = cli_json(config, "cases", "list")
    assert case["subject"] == "DIP rejects IF-041 for batch 1"
    (held,) = cli_json(config, "quarantine", "list")
    assert "dmarc=fail (Authentication-Results from microsoft-365)" in held["reason"]
    assert dovecot.count(QUARANTINE) == 1
