"""Loop and automatic-mail guards: decide first, before anything can answer a machine."""

from __future__ import annotations

from sqlalchemy import select

from gateway import bounces, outbound
from gateway.context import Deps, MessageContext, Stop
from gateway.models import Case, Outbox
from parsers.mime import header_count, header_text

MAX_RECEIVED = 50  # Postfix's hopcount_limit: more hops than this is a loop


def loops(ctx: MessageContext, deps: Deps) -> Stop | None:
    assert ctx.parsed is not None and ctx.parsed.message is not None
    assert ctx.analysis is not None
    msg = ctx.parsed.message
    if header_text(msg, "X-CPSD-Loop") == deps.identity.loop_id:
        return Stop("ignored", "our own mail came back (X-CPSD-Loop)")
    own = ctx.analysis.message_id  # parsers.message_ids.message_id, read once
    if own and own.rstrip(">").endswith("@" + deps.identity.message_id_domain):
        sent = deps.session.scalar(select(Outbox.id).where(Outbox.message_id == own))
        if sent is not None:
            return Stop("ignored", f"our own mail came back (Message-ID {own}, outbox row {sent})")
    hops = header_count(msg, "Received")
    if hops > MAX_RECEIVED:
        return Stop("quarantined", f"mail loop suspected: {hops} Received headers")
    bounce = ctx.analysis.bounce
    if bounce is not None:
        row = bounces.link(deps.session, bounce, deps.now)
        about = f"outbox row {row.id} ({row.template})" if row else "no mail of ours found"
        if row is not None and row.case_id is not None:
            ctx.row.case_id = row.case_id
        if row is not None and bounce.permanent:
            outbound.queue_staff_alert(
                deps.session,
                deps.renderer,
                deps.identity,
                about=row,
                case=deps.session.get(Case, row.case_id) if row.case_id else None,
                kind="delivery_failed",
                headline=f"Mail to {', '.join(row.recipients)} bounced",
                reason=bounce.reason,
            )
        return Stop("ignored", f"delivery status notification about {about}: {bounce.reason}")
    ctx.automatic = ctx.analysis.auto_reply
    return None
