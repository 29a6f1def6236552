"""Reading message bodies by UID with imaplib's own reader, under imapclient.

Why: a back-fill spends most of its CPU turning FETCH responses into Python objects, and
imapclient's generic response lexer costs about as much as the rest of the import put
together (profiled: ~40 % of a FETCH). A ``UID FETCH (UID BODY.PEEK[])`` answer has one
fixed shape, which imaplib already splits into (head, literal) pairs; reading the UID
from the head is all that is left. The connection is still imapclient's (TLS, login,
OAuth2, IDLE); only this one command goes through its ``_imap`` attribute, and a client
without it is read the ordinary way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

_UID = re.compile(rb"\bUID (\d+)")


def fetch_bodies(client: IMAPClient, uids: Sequence[int], uid_set: str) -> dict[int, bytes]:
    """``BODY.PEEK[]`` (never sets \\Seen) of ``uids``; UIDs that no longer exist are absent."""
    imap = getattr(client, "_imap", None)
    if imap is None:
        return _fetch_generic(client, uids)
    typ, data = imap.uid("FETCH", uid_set, "(UID BODY.PEEK[])")
    if typ != "OK":
        raise IMAPClientError(f"UID FETCH failed: {data!r:.200}")
    wanted = set(uids)
    bodies: dict[int, bytes] = {}
    for i, item in enumerate(data):
        if not isinstance(item, tuple) or len(item) != 2 or b"BODY[]" not in item[0]:
            continue  # ")" closers and unsolicited FETCHes (flag changes) carry no body
        head, literal = item
        found = _UID.search(head)
        if found is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
            found = _UID.search(data[i + 1])  # "BODY[] {n} ... UID 7)": UID after the literal
        if found is None:
            raise IMAPClientError(f"FETCH response without a UID: {head!r:.200}")
        uid = int(found.group(1))
        if uid in wanted and isinstance(literal, bytes):
            bodies[uid] = literal
    return bodies


def _fetch_generic(client: IMAPClient, uids: Sequence[int]) -> dict[int, bytes]:
    fetched = client.fetch(list(uids), ["BODY.PEEK[]"])
    return {
        uid: raw for uid in uids if isinstance(raw := fetched.get(uid, {}).get(b"BODY[]"), bytes)
    }
