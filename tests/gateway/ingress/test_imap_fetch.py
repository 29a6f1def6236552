"""Bodies by UID through imaplib's reader, against a real Dovecot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.ingress.imap import uid_set
from gateway.ingress.imap_fetch import fetch_bodies
from tests.conftest import mail
from tests.dovecot import Dovecot


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.destroy()


def test_bodies_come_back_byte_for_byte_by_uid_and_unread(dovecot: Dovecot) -> None:
    messages = [mail(message_id=f"<f{i}@brightenergy.example>") for i in range(5)]
    messages.append(
        b"Subject: 8bit\r\n\r\n"
        + bytes(range(32, 132))
        + b"\r\n"
        + bytes(range(132, 256))
        + b"\r\n"
    )
    dovecot.append("INBOX", messages)
    client = dovecot.client()
    client.select_folder("INBOX")
    uids = sorted(client.search("ALL"))
    client.delete_messages(uids[1:2])  # one flagged \Deleted and expunged: gone
    client.expunge()
    wanted = [uids[0], *uids[2:]]
    bodies = fetch_bodies(client, [*wanted, uids[1]], uid_set([*wanted, uids[1]]))
    assert sorted(bodies) == wanted
    assert bodies[uids[0]] == messages[0]
    assert bodies[uids[-1]] == messages[-1]
    assert not any(b"\\Seen" in flags for flags in client.get_flags(wanted).values())  # PEEK
    client.logout()


def test_a_client_without_imaplib_underneath_is_read_the_ordinary_way(dovecot: Dovecot) -> None:
    dovecot.append("INBOX", [mail()])
    client = dovecot.client()
    client.select_folder("INBOX")
    uids = client.search("ALL")

    class Wrapped:  # what a future imapclient without ``_imap`` would look like to us
        def fetch(self, *args: object) -> object:
            return client.fetch(*args)  # type: ignore[arg-type]

    bodies = fetch_bodies(Wrapped(), uids, uid_set(uids))  # type: ignore[arg-type]
    assert bodies == {uids[0]: mail()}
    client.logout()
