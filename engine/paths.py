"""Where Bellwether keeps its files: one data directory, chosen by ``BELLWETHER_HOME``.

Default: ``~/.bellwether``. It holds ``bellwether.db`` (SQLite, WAL) and every file the product writes:
``runs/<id>/`` (model, checkpoints, log), ``uploads/`` (the source files of datasets and feeds).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path.home() / ".bellwether"


def home() -> Path:
    path = Path(os.environ.get("BELLWETHER_HOME") or DEFAULT_HOME).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return home() / "bellwether.db"


def runs_dir() -> Path:
    path = home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_id: int) -> Path:
    path = runs_dir() / str(int(run_id))
    path.mkdir(parents=True, exist_ok=True)
    return path


def uploads_dir() -> Path:
    path = home() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path
