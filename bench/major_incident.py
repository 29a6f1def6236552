"""How long queuing a major-incident notice to 200 nominated contacts takes.

    .venv/bin/python bench/major_incident.py [--parties 200]

Builds a directory of N parties, declares a major incident and times the transaction
that renders, composes and stores one outbox row per contact. Target: under 1 second
for 200 recipients (delivery then happens in the background worker).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway import actions  # noqa: E402
from gateway import app as app_module  # noqa: E402
from gateway.context import Operator  # noqa: E402
from gateway.settings import load  # noqa: E402
from gateway.steps.reply import queue  # noqa: E402
from tests.support import free_port, settings_text  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "parties.toml").write_text(
            "\n".join(
                f'[[party]]\nid = "P{i}"\nname = "Party {i}"\nrole = "supplier"\n'
                f'domains = ["p{i}.example"]\ncontact = "desk@p{i}.example"\n'
                for i in range(args.parties)
            )
        )
        config = tmp / "settings.toml"
        config.write_text(settings_text(tmp, free_port(), parties=tmp / "parties.toml"))
        app = app_module.build(load(config))
        acting = Operator(actor="bench")
        started = time.perf_counter()
        with app.sessions.begin() as session:
            deps = app.make_deps(session)
            case = actions.declare_major(acting, deps, "DIP unavailable")
            recipients = actions.major_recipients(deps, case, ())
            actions.major_notice(
                acting,
                deps,
                case,
                recipients,
                phase="declared",
                message="The DIP is not accepting messages.",
                roles=[],
            )
            for item in acting.outgoing:
                queue(deps, item, actor=acting.actor)
        elapsed = time.perf_counter() - started
        app.close()
    print(
        f"{len(recipients)} major-incident notices queued in {elapsed:.3f} s "
        f"(target < 1 s: {'met' if elapsed < 1 else 'missed'})"
    )
    return 0 if elapsed < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
