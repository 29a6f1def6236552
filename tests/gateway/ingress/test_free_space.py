"""The free-space check at MAIL FROM reads the real file system: statvfs, no fakes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from gateway.ingress.free_space import FreeSpace, of
from gateway.settings import Settings


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_a_message_that_fits_with_room_to_spare_is_welcome(tmp_path: Path) -> None:
    assert FreeSpace((tmp_path,), reserve_bytes=0).short_for(_free(tmp_path) // 4) is None


def test_a_message_needs_half_as_much_again_as_its_size(tmp_path: Path) -> None:
    # Like Postfix: 1.5x the size, so a message as large as the free space never fits.
    short = FreeSpace((tmp_path,), reserve_bytes=0).short_for(_free(tmp_path))
    assert short is not None and short.startswith(f"{tmp_path} has ")


def test_the_reserve_is_kept_for_the_database(tmp_path: Path) -> None:
    short = FreeSpace((tmp_path,), reserve_bytes=_free(tmp_path) * 2).short_for(1)
    assert short is not None and "bytes free" in short


def test_a_directory_not_made_yet_is_no_reason_to_refuse(tmp_path: Path) -> None:
    assert FreeSpace((tmp_path / "later",), reserve_bytes=10**18).short_for(1) is None


def test_it_watches_the_database_and_the_raw_store_directories(settings: Settings) -> None:
    database = Path(settings.database.url.removeprefix("sqlite:///")).parent
    assert of(settings).paths == (database,)
    on_files = dataclasses.replace(
        settings, storage=dataclasses.replace(settings.storage, backend="directory")
    )
    assert of(on_files).paths == (database, Path(settings.storage.raw_dir))
    on_postgres = dataclasses.replace(
        settings,
        database=dataclasses.replace(settings.database, url="postgresql+psycopg://db/cpsd"),
    )
    assert of(on_postgres).paths == ()  # the database's disk is another machine's
