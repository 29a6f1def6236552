"""A major incident: every nominated contact told, each update threaded to the last."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from tests.e2e.server import cli, cli_json
from tests.support import free_port, settings_text


def test_major_incident_start_update_end_threads_per_recipient(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(tmp_path, free_port()))
    started = cli(
        config,
        "major",
        "start",
        "--title",
        "DIP unavailable",
        "--message",
        "The DIP is not accepting messages since 09:00.",
    )
    assert "CPSD-000001: major incident declared; 10 notices queued" in started.stdout
    cli(config, "major", "update", "CPSD-000001", "--message", "Fix being deployed.")
    ended = cli(config, "major", "end", "CPSD-000001", "--message", "Service restored 11:40.")
    assert "10 notices queued" in ended.stdout
    cli(config, "outbox", "flush")

    sent = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted((tmp_path / "var" / "outbox").glob("*.eml"))
    ]
    to_dcc = [m for m in sent if m["To"] == "servicedesk@dcc.example"]
    assert len(to_dcc) == 3
    assert "declared" in to_dcc[0]["Subject"] and "ended" in to_dcc[2]["Subject"]
    assert to_dcc[1]["In-Reply-To"] == to_dcc[0]["Message-ID"]
    assert to_dcc[2]["In-Reply-To"] == to_dcc[1]["Message-ID"]
    assert to_dcc[0]["Message-ID"] in to_dcc[2]["References"]
    assert not [m for m in sent if m["To"] == "cpsd@elexon.example"]  # not to ourselves
    shown = cli_json(config, "case", "show", "CPSD-000001")
    assert shown["state"] == "closed"
    assert "major_incident_ended" in [e["kind"] for e in shown["events"]]


def test_major_start_by_role_and_unknown_incident(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(tmp_path, free_port()))
    started = cli(
        config,
        "major",
        "start",
        "--title",
        "Settlement run late",
        "--message",
        "x",
        "--role",
        "ldso",
    )
    assert "2 notices queued" in started.stdout
    wrong = cli(config, "major", "update", "CPSD-000099", "--message", "x", check=False)
    assert wrong.returncode == 2 and "not a major incident" in wrong.stderr
