"""Did the mail really come from the sender's domain? Our MTA's verdict, under a policy.

The From address says who a message claims to be from; a reference or a thread header
only points at a candidate case. Neither proves anything, and a forged reply must never
be relayed to the real parties of a case (reliability.md B48, iTop #218). So when an MTA
in front of us writes Authentication-Results (``[authentication] authserv_ids``), its
verdict decides under the sender's policy (the party's own, else the default):

- strict: anything but a pass is quarantined with the reason;
- relaxed: a fail is quarantined; an unverified message (no result, a DNS error) goes
  through, but no automatic mail goes to parties because of it (see the reply step);
- off: the verdict is recorded only.

A shared mailbox in Microsoft 365 (``[[imap]] authentication_results = "microsoft-365"``)
has Exchange Online's own verdict instead, for the mail read from it.

Staff mail is held to strict whatever the policy says (unless it is off): it drives
cases (``#close``, ``#assign``), and withholding its mails would not undo that. Copies
read from our own Sent folder and messages staff released are not checked.
"""

from __future__ import annotations

from gateway.context import Deps, MessageContext, Sender, Stop
from gateway.settings import AuthenticationSettings, AuthPolicy
from parsers.authentication import authenticate as verdict_of_our_mta


def authenticate(ctx: MessageContext, deps: Deps) -> Stop | None:
    settings = deps.settings.authentication
    sender = ctx.sender
    microsoft_365 = _from_microsoft_365(deps, ctx.row.source)
    if not (settings.authserv_ids or microsoft_365) or ctx.row.sent_copy or ctx.released:
        return None
    assert sender is not None and sender.address is not None
    assert ctx.parsed is not None and ctx.parsed.message is not None
    policy = _policy(sender, settings)
    found = verdict_of_our_mta(
        ctx.parsed.message,
        sender.address.rpartition("@")[2],
        settings.authserv_ids,
        microsoft_365=microsoft_365,
    )
    ctx.row.authentication = found.verdict
    if found.verdict == "pass" or policy == "off":
        return None
    if found.verdict == "fail" or policy == "strict":
        return Stop("quarantined", f"sender {sender.address} not verified: {found.reason}")
    ctx.unverified = found.reason
    ctx.notes.append(f"sender not verified ({found.reason}): no automatic mail to parties")
    return None


def _policy(sender: Sender, settings: AuthenticationSettings) -> AuthPolicy:
    if sender.kind == "staff":
        return "off" if settings.policy == "off" else "strict"
    return (sender.party.authentication if sender.party else None) or settings.policy


def _from_microsoft_365(deps: Deps, source: str) -> bool:
    """Read from a mailbox in Exchange Online (``[[imap]] authentication_results``)?"""
    return any(
        m.authentication_results == "microsoft-365" and source.startswith(f"imap:{m.name}:")
        for m in deps.settings.imap
    )
