"""Shared fixtures: a fresh data directory per test, the shared real data, and tiny models built from a config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.data import shared_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED = shared_dir()  # ../shared/data beside the checkout, or BELLWETHER_SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty BELLWETHER_HOME for this test."""
    path = tmp_path / "home"
    monkeypatch.setenv("BELLWETHER_HOME", str(path))
    return path


@pytest.fixture
def store(home):
    from engine import db

    conn = db.connect()
    yield conn
    conn.close()


def shared_file(*parts: str) -> Path:
    """A file from ../shared/data, or a skip with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared real data folder is not beside this checkout")
    return path


@pytest.fixture
def shared():
    return shared_file


def file_snapshot(home: Path) -> set[str]:
    """Every file under the data directory except SQLite's own journal files."""
    return {
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm", "-journal"))
    }


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """A tiny BERT text classifier (negative / neutral / positive) built from a config, with the default tokenizer."""
    from tests.helpers import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-text"), ["negative", "neutral", "positive"])


@pytest.fixture(autouse=True)
def _english_unless_asked():
    """Each test starts in the default language and leaves none behind (a page run or an in-process CLI call with
    --lang sets the language of the thread it runs in)."""
    from engine import i18n

    with i18n.using(None):
        yield


SLOW_STEPS = {"BELLWETHER_TEST_STEP_DELAY_S": "0.25"}  # training steps slowed so that tests can act mid-run


@pytest.fixture
def workers(home, monkeypatch):
    """Start supervisors (`python -m engine worker`); every one started here is stopped at the end."""
    from tests.test_training import stop_supervisor

    monkeypatch.setenv("BELLWETHER_TEST_STEP_DELAY_S", SLOW_STEPS["BELLWETHER_TEST_STEP_DELAY_S"])
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--poll", "0.3"], cwd=ROOT,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    stop_supervisor(home)
    kill_job_processes()


def kill_job_processes() -> None:
    """No job process may outlive a test: every job with a process id in this data directory is killed."""
    from engine import db

    conn = db.connect()
    for row in conn.query("SELECT pid FROM jobs WHERE pid IS NOT NULL"):
        try:
            os.killpg(row["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
