import subprocess
import sys
import threading

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


def test_several_processes_opening_a_brand_new_store_at_once_all_get_it(tmp_path):
    # The dashboard, the job worker and the feed worker can all start on an empty data directory together. The
    # switch to WAL on a new file once answered the loser "database is locked" at once (about 1 time in 300 for
    # two openers); every opener must get a working store.
    errors = []

    def open_store(path, barrier):
        try:
            barrier.wait(timeout=30)
            conn = db.connect(path)
            conn.execute("SELECT count(*) FROM jobs").fetchone()
            conn.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    for attempt in range(40):
        barrier = threading.Barrier(4)
        path = tmp_path / f"store-{attempt}" / "bellwether.db"
        threads = [threading.Thread(target=open_store, args=(path, barrier)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, f"store {attempt}: {errors}"
        assert db.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
