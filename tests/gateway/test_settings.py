from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import SettingsError, load

REPO = Path(__file__).resolve().parents[2]


def test_embedded_defaults_load_and_resolve_paths_against_the_file() -> None:
    settings = load(REPO / "settings.toml")
    assert settings.smtp.listen == "127.0.0.1:2525"
    assert settings.database.url == f"sqlite:///{REPO / 'var' / 'gateway.db'}"
    assert settings.outbound.maildir == str(REPO / "var" / "outbox")
    assert settings.message_id_domain == "elexon.example"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[smtp]\nlisen = '127.0.0.1:25'\n", "unknown key [smtp] lisen"),
        ("[smpt]\nlisten = '127.0.0.1:25'\n", "unknown section [smpt]"),
        ("[smtp]\nmax_message_bytes = 'big'\n", "[smtp] max_message_bytes: must be a whole number"),
        ("[smtp]\nlisten = 'nowhere'\n", "[smtp] listen must be host:port"),
        ("[smtp]\nmax_sessions = 0\n", "[smtp] max_sessions must be at least 1"),
        ("[smtp]\nmin_free_bytes = -1\n", "[smtp] min_free_bytes must be 0 or more"),
        ("[database]\nurl = 'sqlite://'\n", "[database] url: SQLite in memory keeps nothing"),
        (
            "[database]\nurl = 'sqlite:///:memory:'\n",
            "[database] url: SQLite in memory keeps nothing",
        ),
        (
            "[gateway]\nmax_new_cases_per_sender_per_hour = -1\n",
            "[gateway] max_new_cases_per_sender_per_hour must be 0 (no limit) or more",
        ),
        ("[outbound]\ntransport = 'pigeon'\n", "[outbound] transport: must be one of"),
        ("[gateway]\nmailboxes = 'cpsd@x.example'\n", "[gateway] mailboxes: must be a list"),
        ("[worker]\nenabled = 1\n", "[worker] enabled: must be true or false"),
        ("[worker]\nprepare_processes = -1\n", "[worker] prepare_processes must be 0 to 64"),
        ("[worker]\nbatch_size = 0\n", "[worker] batch_size must be at least 1"),
        ("[authentication]\npolicy = 'lenient'\n", "[authentication] policy: must be one of"),
        (
            "[authentication]\nauthserv_ids = 'mx'\n",
            "[authentication] authserv_ids: must be a list",
        ),
        ("[gateway\n", "not valid TOML"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_cli_exits_2_with_one_line_for_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[database]\nurl = 'sqlite:///x.db'\nbusy = 3\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "cases", "list", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and "[database] busy" in lines[0]


def test_config_comes_from_the_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "parties", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"CPSD_GATEWAY_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert f"{path}: settings file not found" in done.stderr
