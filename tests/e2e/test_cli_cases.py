"""The desk's command line: ingest, quarantine, breaching cases, raising a case to a party."""

from __future__ import annotations

import json
import mailbox
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.desk import mail
from tests.e2e.server import cli, cli_json
from tests.support import free_port, settings_text

BODY = (
    "Summary: IF-041 rejected\nImpact: 200 customers\nMPAN: 1052601815905\n"
    "Evidence: DIP portal shows REJECTED\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(settings_text(tmp_path, free_port()))
    return path


def test_ingest_takes_files_maildirs_and_mboxes_through_one_path(
    config: Path, tmp_path: Path
) -> None:
    eml = tmp_path / "one.eml"
    eml.write_bytes(mail(sender="ops@brightenergy.example", subject="one", body=BODY))
    box = mailbox.Maildir(tmp_path / "md")
    box.add(mail(sender="ops@meadowpower.example", subject="two", body=BODY))
    mbox = mailbox.mbox(tmp_path / "three.mbox")
    mbox.add(mail(sender="stranger@nowhere.example", subject="three", body=BODY))
    mbox.flush()
    done = cli(
        config, "ingest", str(eml), str(tmp_path / "md"), str(tmp_path / "three.mbox"), "--json"
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["outcome"] for line in lines] == ["case_created", "case_created", "quarantined"]
    assert lines[0]["reference"] == "CPSD-000001"
    assert "not in the party directory" in lines[2]["reason"]
    again = cli(config, "ingest", str(eml), "--json")
    assert json.loads(again.stdout)["outcome"] == "duplicate"

    held = cli_json(config, "quarantine", "list")
    assert [h["subject"] for h in held] == ["three"]
    assert set(held[0]) >= {"id", "from", "subject", "message_id", "reason", "at"}
    released = cli(config, "quarantine", "release", str(held[0]["id"]))
    assert "case_created CPSD-000003" in released.stdout
    assert cli_json(config, "quarantine", "list") == []
    story = cli(config, "case", "show", "CPSD-000003").stdout
    assert "message_released" in story


def test_breaching_lists_only_cases_past_or_near_their_target(config: Path, tmp_path: Path) -> None:
    for index in range(3):
        path = tmp_path / f"{index}.eml"
        path.write_bytes(
            mail(
                sender="ops@brightenergy.example",
                subject=f"case {index}",
                body=BODY.replace("Summary:", "Priority: P1\nSummary:"),
            )
        )
        cli(config, "ingest", str(path))
    database = sqlite3.connect(tmp_path / "var" / "gateway.db")
    now = datetime.now(UTC)
    database.execute(
        "UPDATE cases SET opened_at = ?, due_at = ? WHERE reference = 'CPSD-000001'",
        ((now - timedelta(hours=7)).isoformat(), (now - timedelta(hours=1)).isoformat()),
    )
    database.execute(
        "UPDATE cases SET opened_at = ?, due_at = ? WHERE reference = 'CPSD-000002'",
        ((now - timedelta(hours=5)).isoformat(), (now + timedelta(hours=1)).isoformat()),
    )
    database.commit()
    rows = cli_json(config, "cases", "list", "--breaching")
    assert {r["reference"]: r["sla"] for r in rows} == {
        "CPSD-000001": "breached",
        "CPSD-000002": "near",
    }
    assert len(cli_json(config, "cases", "list")) == 3
    third = next(r for r in cli_json(config, "cases", "list") if r["reference"] == "CPSD-000003")
    assert third["priority"] == "P1" and third["due_at"] is not None


def test_case_raise_sends_a_child_case_with_evidence_to_the_nominated_mailbox(
    config: Path, tmp_path: Path
) -> None:
    source = tmp_path / "raise.eml"
    source.write_bytes(mail(sender="ops@brightenergy.example", subject="meter reads", body=BODY))
    cli(config, "ingest", str(source))
    evidence = tmp_path / "dip-status.csv"
    evidence.write_text(
        "transaction,status\nT-IF-041-1009012345-REGS-20261127-0123456789ABCDEF,REJECTED\n"
    )
    done = cli(
        config,
        "case",
        "raise",
        "--party",
        "DCC",
        "--parent",
        "CPSD-000001",
        "--summary",
        "IF-041 rejected by the DCC adapter",
        "--impact",
        "200 customers",
        "--mpan",
        "1183016613184",
        "--transaction",
        "T-IF-041-1009012345-REGS-20261127-0123456789ABCDEF",
        "--attach",
        str(evidence),
    )
    assert "CPSD-000002 raised to Data Communications Company (demo)" in done.stdout
    parent = cli_json(config, "case", "show", "CPSD-000001")
    assert parent["children"] == ["CPSD-000002"] and parent["state"] == "assigned"
    child = cli_json(config, "case", "show", "CPSD-000002")
    sent = [m for m in child["messages"] if m["direction"] == "out"]
    assert sent[0]["to"] == ["servicedesk@dcc.example"] and sent[0]["template"] == "outbound_case"
    written = (tmp_path / "var" / "outbox").glob("*.eml")
    text = "\n".join(p.read_text(errors="replace") for p in written)
    assert "1183016613184" in text and "dip-status.csv" in text


def test_case_raise_without_a_parent_is_elexons_own_case(config: Path) -> None:
    done = cli(
        config,
        "case",
        "raise",
        "--party",
        "linkpoint dip connections",
        "--summary",
        "DIP connection drops every hour",
        "--impact",
        "messages delayed",
    )
    assert "CPSD-000001 raised to LinkPoint DIP Connections (noc@linkpoint.example)" in done.stdout
    shown = cli_json(config, "case", "show", "CPSD-000001")
    assert shown["parent"] is None and shown["state"] == "assigned"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mpan", "1052601815904"], "--mpan"),
        (["--party", "NOBODY"], "--party"),
        (["--transaction", "x"], "--transaction"),
    ],
)
def test_case_raise_rejects_bad_arguments_with_exit_2(
    config: Path, args: list[str], message: str
) -> None:
    base = {"--party": "DCC", "--summary": "s", "--impact": "i"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [item for pair in base.items() for item in pair]
    if "--mpan" in args:
        argv += ["--mpan", args[args.index("--mpan") + 1]]
    if "--transaction" in args:
        argv += ["--transaction", args[args.index("--transaction") + 1]]
    done = cli(config, "case", "raise", *argv, check=False)
    assert done.returncode == 2
    assert message in done.stderr


def test_ingest_into_a_locked_database_says_so_in_one_line(config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text().replace("[storage]", "busy_timeout_ms = 300\n\n[storage]"))
    cli(config, "db", "upgrade")
    eml = tmp_path / "one.eml"
    eml.write_bytes(mail(sender="ops@brightenergy.example", subject="one", body=BODY))
    blocker = sqlite3.connect(tmp_path / "var" / "gateway.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # a long write elsewhere holds the lock
        done = cli(config, "ingest", str(eml), check=False)
    finally:
        blocker.close()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "cpsd-gateway: database unavailable: OperationalError: "
        "(sqlite3.OperationalError) database is locked"
    ]
    assert cli_json(config, "cases", "list") == []
    again = cli(config, "ingest", str(eml))  # once the lock is gone, the same file goes in
    assert "case_created CPSD-000001" in again.stdout


def test_quarantine_release_takes_several_and_names_any_it_cannot(
    config: Path, tmp_path: Path
) -> None:
    for n in (1, 2):
        eml = tmp_path / f"{n}.eml"
        eml.write_bytes(mail(sender="stranger@nowhere.example", subject=f"held {n}", body=BODY))
        cli(config, "ingest", str(eml), check=False)
    ids = [str(h["id"]) for h in cli_json(config, "quarantine", "list")]
    assert len(ids) == 2
    done = cli(config, "quarantine", "release", *ids, "999", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == "cpsd-gateway: message 999 is not in quarantine"
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["case_created"] * 2
    assert cli_json(config, "quarantine", "list") == []
