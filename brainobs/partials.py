"""Temporary files and folders that name their owner (host and process id).

A killed export, release or MotionCorrection job leaves its temporary file or staging folder behind; the
next run removes those whose owner was a process of this host that no longer runs, and leaves alone those
of live processes and of other hosts (whose processes it cannot see).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

HOST = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-") or "host"
_OWNER = re.compile(r"(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)")


def owner() -> str:
    """This process as an owner name: ``<host>-<pid>``."""
    return f"{HOST}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale(owner_name: str) -> bool:
    """True when ``owner_name`` is a process of this host that has exited."""
    match = _OWNER.fullmatch(owner_name)
    return bool(match) and match["host"] == HOST and not _alive(int(match["pid"]))


def remove_stale(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the entries of ``folder`` whose name matches ``pattern`` (group ``owner``) and whose owner has
    exited; returns what was removed."""
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and is_stale(match["owner"]):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
