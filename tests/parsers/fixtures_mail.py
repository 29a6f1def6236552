"""Hand-written messages in the shapes real MTAs and clients send (no corpus copies).

Each builder returns raw bytes, parsed the way ingress parses them
(``BytesParser(policy=policy.default)``), so the tests see what production sees.
Addresses use the fictitious ``.example`` parties of the demo directory.
"""

from __future__ import annotations

import binascii
import struct
import textwrap
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

OUR_ID = "<20260131091500.4F2A@cpsd.elexon.example>"
OUR_ADDRESS = "cpsd@elexon.example"


def parse(raw: bytes | str) -> EmailMessage:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def tnef_object(level: int, name: int, kind: int, data: bytes) -> bytes:
    """One TNEF attribute (MS-OXTNEF): level, id, type, length, data, checksum."""
    head = struct.pack("<BHHI", level, name, kind, len(data))
    return head + data + struct.pack("<H", sum(data) & 0xFFFF)


def winmail(*objects: bytes) -> bytes:
    """A winmail.dat as Outlook writes it: signature, key, TNEF version, then ``objects``."""
    version = tnef_object(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))
    return struct.pack("<IH", 0x223E9F78, 0x0001) + version + b"".join(objects)


def _mail(text: str, **blocks: str) -> bytes:
    """Dedent a template, then put in multi-line ``@@NAME@@`` blocks (which would spoil
    the dedent if interpolated first)."""
    out = textwrap.dedent(text).lstrip("\n")
    for name, block in blocks.items():
        out = out.replace(f"@@{name.upper()}@@", block.rstrip("\n") + "\n")
    return out.encode("utf-8")


def _original(to: str = "meter.ops@supplier-a.example") -> str:
    return (
        f"From: CPSD Service Desk <{OUR_ADDRESS}>\n"
        f"To: {to}\n"
        "Subject: [CPSD-000123] Missing D0010 flows for MPAN 1052601815905\n"
        f"Message-ID: {OUR_ID}\n"
        "Date: Sat, 31 Jan 2026 09:15:00 +0000\n"
        "Auto-Submitted: auto-generated\n"
    )


def postfix_dsn(
    recipient: str = "meter.ops@supplier-a.example",
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <meter.ops@supplier-a.example>: Recipient address"
    " rejected: User unknown in virtual mailbox table",
    subject: str = "Undelivered Mail Returned to Sender",
    headers_only: bool = True,
) -> bytes:
    """Postfix's RFC 3464 report: notice, message/delivery-status, returned headers."""
    returned = (
        "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n"
        if headers_only
        else "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n"
    )
    return _mail(
        f"""
        Return-Path: <>
        Received: by mx1.elexon.example (Postfix) id 4F2A; Sat, 31 Jan 2026 09:15:02 +0000
        Date: Sat, 31 Jan 2026 09:15:02 +0000 (UTC)
        From: MAILER-DAEMON@mx1.elexon.example (Mail Delivery System)
        Subject: {subject}
        To: {OUR_ADDRESS}
        Auto-Submitted: auto-replied
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status;
        \tboundary="4F2A.1769850902/mx1.elexon.example"
        Message-Id: <20260131091502.77AB@mx1.elexon.example>

        This is a MIME-encapsulated message.

        --4F2A.1769850902/mx1.elexon.example
        Content-Description: Notification
        Content-Type: text/plain; charset=us-ascii

        This is the mail system at host mx1.elexon.example.

        I'm sorry to have to inform you that your message could not
        be delivered to one or more recipients. It's attached below.

        <{recipient}>: host mx.supplier-a.example[192.0.2.10] said:
            550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

        --4F2A.1769850902/mx1.elexon.example
        Content-Description: Delivery report
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx1.elexon.example
        X-Postfix-Queue-ID: 4F2A
        X-Postfix-Sender: rfc822; {OUR_ADDRESS}
        Original-Envelope-Id: CPSD-000123-7
        Arrival-Date: Sat, 31 Jan 2026 09:15:00 +0000 (UTC)

        Final-Recipient: rfc822; {recipient}
        Original-Recipient: rfc822;{recipient}
        Action: {action}
        Status: {status}
        Remote-MTA: dns; mx.supplier-a.example
        Diagnostic-Code: {diagnostic}

        --4F2A.1769850902/mx1.elexon.example
        @@RETURNED@@
        @@ORIGINAL@@
        --4F2A.1769850902/mx1.elexon.example--
        """,
        returned=returned,
        original=_original(recipient),
    )


def delayed_dsn() -> bytes:
    """Sendmail/Postfix warning: still retrying, nothing failed yet."""
    return postfix_dsn(
        "settlement@dcc-b.example",
        action="delayed",
        status="4.4.1",
        diagnostic="X-Postfix; connect to mx.dcc-b.example[192.0.2.20]:25: Connection timed out",
        subject="Delayed Mail (still being retried)",
    )


def success_dsn() -> bytes:
    """A positive DSN (NOTIFY=SUCCESS): a report, but nothing bounced."""
    return postfix_dsn(
        "meter.ops@supplier-a.example",
        action="delivered",
        status="2.0.0",
        diagnostic="smtp; 250 2.0.0 Ok: queued as 9A1",
        subject="Successful Mail Delivery Report",
    )


def office365_ndr() -> bytes:
    """Exchange Online NDR: HTML-only notice, delivery-status, original attached."""
    return _mail(
        f"""
        From: Microsoft Outlook <postmaster@supplierb.onmicrosoft.example>
        To: {OUR_ADDRESS}
        Date: Sat, 31 Jan 2026 09:16:01 +0000
        Subject: Undeliverable: [CPSD-000123] Missing D0010 flows
        Content-Type: multipart/report; report-type=delivery-status;
        \tboundary="b1_ndr"
        Message-ID: <e1f2@DB9PR01MB0001.eurprd01.prod.outlook.example>
        MIME-Version: 1.0
        X-MS-Exchange-Message-Is-Ndr:

        --b1_ndr
        Content-Type: multipart/alternative; boundary="b2_alt"

        --b2_alt
        Content-Type: text/html; charset="us-ascii"

        <html><body><p><b><font color="#000066">Your message to
        <a href="mailto:settlement@supplier-b.example">settlement@supplier-b.example</a>
        couldn't be delivered.</font></b></p>
        <p>Delivery has failed to these recipients or groups:</p>
        <p>settlement@supplier-b.example<br>The email address you entered couldn't be
        found.</p><p>Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound;
        Recipient not found by SMTP address lookup'</p></body></html>

        --b2_alt--

        --b1_ndr
        Content-Type: message/delivery-status

        Reporting-MTA: dns;DB9PR01MB0001.eurprd01.prod.outlook.example
        Received-From-MTA: dns;mail.elexon.example
        Arrival-Date: Sat, 31 Jan 2026 09:16:00 +0000

        Final-Recipient: rfc822;settlement@supplier-b.example
        Action: failed
        Status: 5.1.10
        Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

        --b1_ndr
        Content-Type: message/rfc822

        @@ORIGINAL@@
        Body of our notification.

        --b1_ndr--
        """,
        original=_original("settlement@supplier-b.example"),
    )


def exchange_legacy_ndr() -> bytes:
    """Exchange 2003-style NDR: multipart/mixed, free text, original attached."""
    return _mail(
        f"""
        From: System Administrator <postmaster@dcc-c.example>
        To: {OUR_ADDRESS}
        Subject: Undeliverable: [CPSD-000124] Change of supplier read
        Date: Sat, 31 Jan 2026 10:00:00 +0000
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="ndr_mixed"

        --ndr_mixed
        Content-Type: text/plain; charset="us-ascii"

        Your message did not reach some or all of the intended recipients.

              Subject:  [CPSD-000124] Change of supplier read
              Sent:     31/01/2026 09:59

        The following recipient(s) cannot be reached:

              j.smith@dcc-c.example on 31/01/2026 10:00
                    The e-mail account does not exist at the organization this message was sent to.
                    <mx.dcc-c.example #5.1.1 smtp;550 5.1.1 User unknown>

        --ndr_mixed
        Content-Type: message/rfc822

        @@ORIGINAL@@
        Body.

        --ndr_mixed--
        """,
        original=_original("j.smith@dcc-c.example"),
    )


def qmail_bounce() -> bytes:
    return _mail(
        f"""
        Return-Path: <>
        Date: 31 Jan 2026 09:20:00 -0000
        From: MAILER-DAEMON@mail.supplier-c.example
        To: {OUR_ADDRESS}
        Subject: failure notice

        Hi. This is the qmail-send program at mail.supplier-c.example.
        I'm afraid I wasn't able to deliver your message to the following addresses.
        This is a permanent error; I've given up. Sorry it didn't work out.

        <readings@supplier-c.example>:
        Sorry, no mailbox here by that name. (#5.1.1)

        --- Below this line is a copy of the message.

        Return-Path: <{OUR_ADDRESS}>
        Received: (qmail 1234 invoked from network); 31 Jan 2026 09:19:59 -0000
        @@ORIGINAL@@
        Body.
        """,
        original=_original("readings@supplier-c.example"),
    )


def exim_bounce() -> bytes:
    return _mail(
        f"""
        Return-path: <>
        X-Failed-Recipients: agent@mop-d.example
        Auto-Submitted: auto-replied
        From: Mail Delivery System <Mailer-Daemon@relay.mop-d.example>
        To: {OUR_ADDRESS}
        Subject: Mail delivery failed: returning message to sender
        Message-Id: <E1vABCD-0001xY-AA@relay.mop-d.example>
        Date: Sat, 31 Jan 2026 09:30:00 +0000

        This message was created automatically by mail delivery software.

        A message that you sent could not be delivered to one or more of its
        recipients. This is a permanent error. The following address(es) failed:

          agent@mop-d.example
            host mx.mop-d.example [192.0.2.30]
            SMTP error from remote mail server after RCPT TO:<agent@mop-d.example>:
            552 5.2.2 <agent@mop-d.example>: mailbox full

        ------ This is a copy of the message, including all the headers. ------

        Return-path: <{OUR_ADDRESS}>
        @@ORIGINAL@@
        Body.
        """,
        original=_original("agent@mop-d.example"),
    )


def gmail_bounce() -> bytes:
    """Gmail's older free-text DSN (no multipart/report)."""
    return _mail(
        f"""
        Return-Path: <>
        From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
        To: {OUR_ADDRESS}
        Subject: Delivery Status Notification (Failure)
        Date: Sat, 31 Jan 2026 09:40:00 +0000
        Message-ID: <000000000000abcd@google.com>
        Content-Type: text/plain; charset=UTF-8

        Delivery to the following recipient failed permanently:

             ops.team@nhh-e.example

        Technical details of permanent failure:
        Google tried to deliver your message, but it was rejected by the server for the
        recipient domain nhh-e.example by mx.nhh-e.example. [192.0.2.40].

        The error that the other server returned was:
        550 5.1.1 The email account that you tried to reach does not exist.

        ----- Original message -----

        @@ORIGINAL@@
        Body.
        """,
        original=_original("ops.team@nhh-e.example"),
    )


def mdn_read_receipt() -> bytes:
    """RFC 8098 read receipt: a report, but not a delivery failure."""
    return _mail(
        f"""
        From: Jane Doe <jane.doe@supplier-a.example>
        To: {OUR_ADDRESS}
        Subject: Read: [CPSD-000123] Missing D0010 flows
        Date: Sat, 31 Jan 2026 11:00:00 +0000
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=disposition-notification;
        \tboundary="mdn1"

        --mdn1
        Content-Type: text/plain; charset=UTF-8

        Your message was read on 31/01/2026 11:00.

        --mdn1
        Content-Type: message/disposition-notification

        Reporting-UA: supplier-a.example; Microsoft Outlook 16.0
        Final-Recipient: rfc822;jane.doe@supplier-a.example
        Original-Message-ID: {OUR_ID}
        Disposition: manual-action/MDN-sent-manually; displayed

        --mdn1--
        """
    )


def arf_complaint() -> bytes:
    """RFC 5965 feedback loop report about one of our notifications."""
    return _mail(
        """
        From: Feedback Loop <fbl@isp.example>
        To: abuse@elexon.example
        Subject: FW: [CPSD-000123] Missing D0010 flows
        Date: Sat, 31 Jan 2026 12:00:00 +0000
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=feedback-report; boundary="arf1"

        --arf1
        Content-Type: text/plain

        This is an email abuse report for a message received from 192.0.2.1.

        --arf1
        Content-Type: message/feedback-report

        Feedback-Type: abuse
        User-Agent: ISP-FBL/1.0
        Version: 1
        Original-Rcpt-To: <jane.doe@isp.example>

        --arf1
        Content-Type: message/rfc822

        @@ORIGINAL@@
        Body.

        --arf1--
        """,
        original=_original("jane.doe@isp.example"),
    )


def outlook_oof_english() -> bytes:
    """Outlook OOF without RFC 3834 headers: only the subject and Exchange's markers."""
    return _mail(
        f"""
        From: Jane Doe <jane.doe@supplier-a.example>
        To: {OUR_ADDRESS}
        Subject: Automatic reply: [CPSD-000123] Missing D0010 flows
        Date: Sat, 31 Jan 2026 09:15:30 +0000
        Message-ID: <oof1@DB9PR01MB0002.eurprd01.prod.outlook.example>
        In-Reply-To: {OUR_ID}
        X-Auto-Response-Suppress: All
        X-MS-Exchange-Inbox-Rules-Loop: jane.doe@supplier-a.example
        Content-Type: text/plain; charset="us-ascii"

        I am out of the office until 9 February with no access to email.
        For urgent settlement issues contact ops@supplier-a.example.
        """
    )


def outlook_oof_german() -> bytes:
    return _mail(
        f"""
        From: Max Mustermann <max.mustermann@netz-f.example>
        To: {OUR_ADDRESS}
        Subject: Abwesenheitsnotiz: [CPSD-000125] Fehlende Zählerstände
        Date: Sat, 31 Jan 2026 09:17:00 +0100
        X-Autoreply: yes
        Content-Type: text/plain; charset="utf-8"
        Content-Transfer-Encoding: 8bit

        Vielen Dank für Ihre Nachricht. Ich bin bis zum 9. Februar nicht im Büro.
        """
    )


def list_message() -> bytes:
    return _mail(
        """
        From: MHHS Programme <news@mhhs-programme.example>
        To: industry-updates@lists.mhhs-programme.example
        Subject: Weekly programme update
        Date: Fri, 30 Jan 2026 16:00:00 +0000
        List-Id: MHHS industry updates <industry-updates.lists.mhhs-programme.example>
        List-Unsubscribe: <mailto:industry-updates-leave@lists.mhhs-programme.example>
        Precedence: list

        This week's programme update.
        """
    )


def human_mentions_undeliverable() -> bytes:
    """A person quoting bounce words in a real question: must stay a case."""
    return _mail(
        f"""
        From: Priya Shah <priya.shah@supplier-a.example>
        To: {OUR_ADDRESS}
        Subject: Re: [CPSD-000123] undeliverable D0010 flows
        Date: Sat, 31 Jan 2026 13:00:00 +0000
        In-Reply-To: {OUR_ID}
        Content-Type: text/plain; charset="us-ascii"

        Hi,

        Our DTN gateway marked the D0010 flows as undeliverable again last night.
        The error it logged was "550 5.1.1 user unknown" for meter.ops@supplier-a.example,
        but that mailbox definitely exists. Could not be delivered, it says.
        Can you check MPAN 1052601815905?

        Thanks, Priya
        """
    )


def human_forwards_bounce() -> bytes:
    """A person forwarding a bounce they received: the attached bounce is not ours."""
    inner = exim_bounce().decode()
    return (
        _mail(
            f"""
        From: Priya Shah <priya.shah@supplier-a.example>
        To: {OUR_ADDRESS}
        Subject: Fwd: Mail delivery failed: returning message to sender
        Date: Sat, 31 Jan 2026 13:05:00 +0000
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="fwd1"

        --fwd1
        Content-Type: text/plain

        Could not be delivered to the following recipients - see the attached bounce.
        Can the desk update the contact for MOP D?

        --fwd1
        Content-Type: message/rfc822

        """
        )
        + inner.encode()
        + b"\n--fwd1--\n"
    )


def human_with_suppress_header() -> bytes:
    """Plain Outlook mail: X-Auto-Response-Suppress alone is not automation (B55)."""
    return _mail(
        f"""
        From: Tom Lee <tom.lee@dcc-b.example>
        To: {OUR_ADDRESS}
        Subject: New issue: settlement run SF failed for GSP group _A
        Date: Sat, 31 Jan 2026 14:00:00 +0000
        X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply
        Content-Type: text/plain

        The SF run failed at 03:00. Please raise a case.
        """
    )


def plain(headers: dict[str, str], body: str = "Hello.\n") -> bytes:
    """A minimal human-looking message with ``headers`` added."""
    base = {
        "From": "Alex Smith <alex.smith@supplier-a.example>",
        "To": OUR_ADDRESS,
        "Subject": "Question about MPAN 1052601815905",
        "Date": "Sat, 31 Jan 2026 15:00:00 +0000",
    }
    base.update(headers)
    lines = [f"{k}: {v}" for k, v in base.items() if v is not None]
    return ("\n".join(lines) + "\n\n" + body).encode("utf-8")


def uuencode(name: str, data: bytes) -> bytes:
    """A file the way Lotus Notes puts it into a text body."""
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return b"begin 644 " + name.encode() + b"\n" + b"".join(lines) + b"`\nend\n"
