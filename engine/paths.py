"""Where Bellwether keeps its files: one data directory, chosen by ``BELLWETHER_HOME``.

Default: ``~/.bellwether``. It holds ``bellwether.db`` (SQLite, WAL) and every file the product writes:
``runs/<id>/`` (model, checkpoints, log), ``uploads/`` (the source files of datasets and feeds).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine import settings

def default_user() -> str:
    """Who acts when nobody signed in by name: $BELLWETHER_USER, else the OS user, else 'analyst'."""
    return settings.user() or os.environ.get("USER") or "analyst"


def home() -> Path:
    path = settings.home()
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


def models_dir() -> Path:
    """Where base models named by hub id are downloaded (never ~/.cache)."""
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def allowed_models_file() -> Path:
    """The administrator's list of base models the dashboard may use, one hub id or folder a line."""
    return home() / "allowed_models.txt"


def uploads_dir() -> Path:
    path = home() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def temporary_home(prefix: str = "bellwether-", keep: bool = False) -> Iterator[Path]:
    """A fresh, empty BELLWETHER_HOME for a benchmark or a script (child processes inherit it), restored afterwards.

    Never the analyst's own store. With ``keep`` the folder stays and its path is printed on stderr.
    """
    old = os.environ.pop("BELLWETHER_HOME", None)  # restored below
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["BELLWETHER_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("BELLWETHER_HOME", None)
        else:
            os.environ["BELLWETHER_HOME"] = old
        if keep:
            print(f"data kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)
