import sqlite3
import subprocess
import sys

import pytest

from engine import db
from tests.conftest import ROOT


def test_schema_is_created_in_wal_mode_and_migrations_are_idempotent(home):
    conn = db.connect()
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (home / "bellwether.db").exists()
    conn.close()
    again = db.connect()  # a second start changes nothing
    assert db.schema_version(again) == db.SCHEMA_VERSION
    assert {"datasets", "jobs", "progress", "articles", "scores", "alerts"} <= set(again.table_names())


def test_a_failed_transaction_leaves_nothing_behind(store):
    try:
        with db.transaction(store):
            store["feeds"].insert({"name": "a", "created_at": db.now()})
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert store["feeds"].count == 0


@pytest.mark.process
def test_cli_without_a_command_prints_help_and_exits_2(home):
    result = subprocess.run([sys.executable, "-m", "engine"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "python -m engine" in result.stdout
