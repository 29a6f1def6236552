"""Refuse new mail for a while when the disk that would store it is nearly full (F7).

Postfix's smtpd answers 452 when free queue space is under 1.5 times the message size
(``queue_minfree``): the sending MTA keeps the message and tries again later, which is
far better than taking DATA and failing at the commit, or filling the disk that the
database needs to finish the work it already has. The check is one ``statvfs`` per path
at MAIL FROM, so it clears by itself as soon as space returns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreeSpace:
    paths: tuple[Path, ...]  # directories that accepted mail is written into
    reserve_bytes: int  # kept free beyond the message itself

    def short_for(self, message_bytes: int) -> str | None:
        """Why a message of this size would not fit now, or None when it would."""
        needed = self.reserve_bytes + message_bytes * 3 // 2
        for path in self.paths:
            try:
                stat = os.statvfs(path)
            except OSError:
                continue  # not there yet: the write itself reports any real problem (451)
            free = stat.f_bavail * stat.f_frsize
            if free < needed:
                log.error(
                    "SMTP: refusing mail, %s has %d bytes free, %d needed", path, free, needed
                )
                return f"{path} has {free} bytes free, {needed} needed"
        return None


def of(settings: Settings) -> FreeSpace:
    """Where this gateway writes accepted mail: the SQLite file's directory, the raw store."""
    paths: list[Path] = []
    url = settings.database.url
    if url.startswith("sqlite:///") and url != "sqlite:///":
        paths.append(Path(url.removeprefix("sqlite:///")).parent)
    if settings.storage.backend == "directory":
        paths.append(Path(settings.storage.raw_dir))
    return FreeSpace(tuple(paths), settings.smtp.min_free_bytes)
