"""Accounts, roles, lock-out and the audit log, at the engine level (what the dashboard and the CLI both call).

Each role against each action that changes something: allowed, or refused with a plain message and nothing changed;
owner checks; the lock-out and its expiry; an audit row for every action.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from engine import access, db, settings
from engine.access import audit, users
from engine.access.roles import Actor, Forbidden
from engine.data import datasets
from engine.jobs import queue
from engine.monitor import alerts, feeds, scoring, topics
from engine.reports import reporting
from engine.training import finetune, reproduce
from tests.conftest import ROOT
from tests.helpers import feed_csv, make_finished_run

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(users, "pause", lambda s: None)


@pytest.fixture
def people(store):
    for name, role in [("vic", "viewer"), ("ann", "analyst"), ("bob", "analyst"), ("ada", "admin")]:
        users.add(store, name, role, PASSWORD)
    return {name: users.sign_in(store, name, PASSWORD) for name in ("vic", "ann", "bob", "ada")}


def labelled_csv(n=40) -> bytes:
    rows = [f"Headline number {i} about {'gains' if i % 2 else 'losses'},{'positive' if i % 2 else 'negative'}"
            for i in range(n)]
    return ("text,label\n" + "\n".join(rows)).encode()


def rows_of(store, action):
    return [r for r in audit.read(store, limit=None) if r["action"] == action]


def test_passwords_are_stored_only_as_scrypt_hashes(store):
    users.add(store, "ann", "analyst", PASSWORD)
    stored = store.execute("SELECT password_hash FROM users WHERE name = 'ann'").fetchone()[0]
    assert PASSWORD not in stored and stored.startswith("scrypt$16384$8$1$")
    assert users.check_password(PASSWORD, stored) and not users.check_password("wrong password", stored)
    assert PASSWORD not in str(audit.read(store))
    with pytest.raises(Exception, match="at least 10 characters"):
        users.add(store, "bob", "analyst", "short")
    with pytest.raises(Exception, match="role must be one of viewer, analyst, admin"):
        users.add(store, "bob", "superuser", PASSWORD)


def test_only_an_admin_manages_users_and_the_last_admin_stays(store, people):
    with pytest.raises(Forbidden, match=r"Your role \(analyst\) cannot manage users: only an administrator can"):
        users.add(store, "eve", "admin", PASSWORD, actor=people["ann"])
    with pytest.raises(Forbidden):
        users.set_role(store, "ann", "admin", actor=people["vic"])
    users.set_role(store, "vic", "analyst", actor=people["ada"])
    assert users.get(store, "vic")["role"] == "analyst"
    with pytest.raises(Exception, match="last active administrator"):
        users.set_role(store, "ada", "viewer", actor=people["ada"])
    users.set_disabled(store, "bob", actor=people["ada"])
    with pytest.raises(Forbidden, match="disabled"):
        users.sign_in(store, "bob", PASSWORD)
    assert [r["object"] for r in rows_of(store, "users.set_role")] == ["user:vic"]
    assert rows_of(store, "users.disable")[0]["actor"] == "ada"


def test_dataset_import_and_delete_by_role_and_owner(store, people):
    with pytest.raises(Forbidden, match=r"Your role \(viewer\) cannot save datasets"):
        datasets.import_file(store, labelled_csv(), "l.csv", "fpb", actor=people["vic"])
    assert store["datasets"].count == 0
    saved, _ = datasets.import_file(store, labelled_csv(), "l.csv", "fpb", actor=people["ann"])
    assert saved["created_by"] == "ann"
    before = db.table_counts(store)
    with pytest.raises(Forbidden, match="Only ann, who created it, or an administrator can delete datasets"):
        datasets.delete(store, "fpb:1", confirm=True, actor=people["bob"])
    with pytest.raises(Forbidden, match="viewer"):
        datasets.delete(store, "fpb:1", confirm=True, actor=people["vic"])
    after = db.table_counts(store)
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items() if k != "audit_log"}
    datasets.delete(store, "fpb:1", confirm=True, actor=people["ann"])  # the owner
    datasets.import_file(store, labelled_csv(), "l.csv", "fpb", actor=people["bob"])
    datasets.delete(store, "fpb:1", confirm=True, actor=people["ada"])  # an admin deletes anyone's
    assert store["datasets"].count == 0
    imports = rows_of(store, "dataset.import")
    assert [(r["actor"], r["object"], r["detail"].get("refused")) for r in reversed(imports)] == [
        ("vic", "dataset:fpb", True), ("ann", "dataset:fpb:1", None), ("bob", "dataset:fpb:1", None)]
    deletes = [(r["actor"], r["object"], bool(r["detail"].get("refused"))) for r in reversed(rows_of(store, "dataset.delete"))]
    assert deletes == [("bob", "dataset:fpb:1", True), ("vic", "dataset:fpb:1", True), ("ann", "dataset:fpb:1", False),
                       ("ada", "dataset:fpb:1", False)]


def test_training_cancel_resume_rerun_by_role_and_owner(store, people, tiny_text_model):
    datasets.import_file(store, labelled_csv(), "l.csv", "fpb", actor=people["ann"])
    with pytest.raises(Forbidden, match="cannot start training runs"):
        finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick", actor=people["vic"])
    run_id = finetune.submit(store, "fpb", base_model=str(tiny_text_model), preset="quick", actor=people["ann"])
    assert queue.get(store, run_id)["created_by"] == "ann"
    for who in ("vic", "bob"):
        with pytest.raises(Forbidden):
            queue.cancel(store, run_id, actor=people[who])
    assert queue.get(store, run_id)["status"] == "queued"
    assert queue.cancel(store, run_id, actor=people["ann"]) == "cancelled"
    with pytest.raises(Forbidden, match="Only ann, who created it, or an administrator can resume runs"):
        queue.resume(store, run_id, actor=people["bob"])
    queue.resume(store, run_id, actor=people["ada"])
    assert queue.get(store, run_id)["status"] == "queued"
    queue.cancel(store, run_id, actor=people["ada"])
    with pytest.raises(Forbidden):
        reproduce.rerun(store, run_id, actor=people["vic"])
    again = reproduce.rerun(store, run_id, actor=people["bob"])
    assert queue.get(store, again)["created_by"] == "bob"
    log = [(r["actor"], r["action"], r["object"], bool(r["detail"].get("refused"))) for r in reversed(audit.read(store))
           if r["action"].startswith(("train", "run"))]
    assert log == [
        ("vic", "train.submit", "dataset:fpb", True), ("ann", "train.submit", f"job:{run_id}", False),
        ("vic", "run.cancel", f"job:{run_id}", True), ("bob", "run.cancel", f"job:{run_id}", True),
        ("ann", "run.cancel", f"job:{run_id}", False), ("bob", "run.resume", f"job:{run_id}", True),
        ("ada", "run.resume", f"job:{run_id}", False), ("ada", "run.cancel", f"job:{run_id}", False),
        ("vic", "train.submit", "dataset:fpb:1", True), ("bob", "train.submit", f"job:{again}", False)]


def test_an_analyst_cannot_overwrite_another_analysts_evaluation(store, people, tiny_text_model):
    run_id = make_finished_run(store, tiny_text_model)
    data = b"text,label\nProfits surge,positive\nLoss widens,negative\n"
    with pytest.raises(Forbidden, match="viewer"):
        reporting.evaluate_file(store, run_id, data, "q3.csv", name="q3", actor=people["vic"])
    reporting.evaluate_file(store, run_id, data, "q3.csv", name="q3", actor=people["ann"])
    with pytest.raises(Forbidden, match="Only ann, who created it"):
        reporting.evaluate_file(store, run_id, data + b"More gains,positive\n", "q3.csv", name="q3",
                                actor=people["bob"])
    assert store.execute("SELECT COUNT(*) FROM predictions WHERE split = 'eval:q3'").fetchone()[0] == 2
    reporting.evaluate_file(store, run_id, data, "q3.csv", name="q3-bob", actor=people["bob"])  # a name of his own
    reporting.evaluate_file(store, run_id, data + b"More gains,positive\n", "q3.csv", name="q3", actor=people["ada"])
    assert store.execute("SELECT COUNT(*) FROM predictions WHERE split = 'eval:q3'").fetchone()[0] == 3
    assert [(r["actor"], bool(r["detail"].get("refused"))) for r in reversed(rows_of(store, "run.evaluate"))] == [
        ("vic", True), ("ann", False), ("bob", True), ("bob", False), ("ada", False)]


def test_feeds_topics_scoring_and_alerts_by_role_and_owner(store, people, tiny_text_model):
    news = feed_csv([("2024-01-0%d 09:00" % d, f"Bank story {d}") for d in range(1, 6)])
    with pytest.raises(Forbidden, match="cannot import news"):
        feeds.import_file(store, news, "n.csv", "wire", actor=people["vic"])
    assert store["feeds"].count == 0
    feeds.import_file(store, news, "n.csv", "wire", actor=people["ann"])
    feed = feeds.get_feed(store, "wire")
    assert feed["created_by"] == "ann"
    # Another analyst adds news to it, but its remembered way of reading files stays the creator's
    other = b"when,headline\n2024-01-07 09:00,Bank story 7\n"
    result = feeds.import_file(store, other, "o.csv", "wire", mapping={"time": "when", "title": "headline"},
                               actor=people["bob"])
    assert result.n_new == 1
    assert feeds.get_feed(store, "wire")["mapping"] == feed["mapping"]
    # topic rules and the alert rule belong to the feed's creator (and admins)
    with pytest.raises(Forbidden, match="Only ann, who created it, or an administrator can change topic rules"):
        feeds.set_topic_rule(store, "wire", "Banks", "bank", actor=people["bob"])
    feeds.set_topic_rule(store, "wire", "Banks", "bank", actor=people["ann"])
    with pytest.raises(Forbidden, match="remove topics or topic rules"):
        feeds.delete_topic_rule(store, "wire", "Banks", actor=people["bob"])
    with pytest.raises(Forbidden, match="viewer"):
        feeds.delete_topic_rule(store, "wire", "Banks", actor=people["vic"])
    assert store["topic_rules"].count == 1
    feeds.delete_topic_rule(store, "wire", "Banks", actor=people["ada"])
    assert store["topic_rules"].count == 0
    with pytest.raises(Forbidden, match="change alert rules"):
        alerts.set_rule(store, feed["id"], actor=people["bob"], k=1.0)
    assert alerts.get_rule(store, feed["id"])["k"] == alerts.DEFAULTS["k"]
    alerts.set_rule(store, feed["id"], actor=people["ann"], k=2.5)
    # scoring and tagging: any analyst; never a viewer
    run_id = make_finished_run(store, tiny_text_model)
    with pytest.raises(Forbidden, match="cannot score feeds"):
        scoring.enqueue(store, "wire", run_id, actor=people["vic"])
    with pytest.raises(Forbidden, match="cannot tag topics"):
        topics.enqueue(store, "wire", run_id, actor=people["vic"])
    assert store.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'score'").fetchone()[0] == 0
    job = scoring.enqueue(store, "wire", run_id, actor=people["bob"])
    assert queue.get(store, job)["created_by"] == "bob"
    store.execute("UPDATE jobs SET purpose = 'topics' WHERE id = ?", [run_id])  # only a topics run tags topics
    topics.enqueue(store, "wire", run_id, actor=people["bob"])
    # acknowledging: any analyst
    alert_id = store["alerts"].insert({"feed_id": feed["id"], "run_id": run_id, "window_start": "2024-01-05",
                                       "window_end": "2024-01-05", "created_at": db.now()}).last_pk
    with pytest.raises(Forbidden, match="cannot acknowledge alerts"):
        alerts.acknowledge(store, alert_id, people["vic"])
    alerts.acknowledge(store, alert_id, people["bob"])
    assert store.execute("SELECT acknowledged_by FROM alerts").fetchone()[0] == "bob"
    summary = [(r["actor"], r["action"], bool(r["detail"].get("refused"))) for r in reversed(audit.read(store))
               if not r["action"].startswith(("sign_in", "users"))]
    assert summary == [
        ("vic", "feed.import", True), ("ann", "feed.import", False), ("bob", "feed.import", False),
        ("bob", "topics.set", True), ("ann", "topics.set", False), ("bob", "topics.delete", True), ("vic", "topics.delete", True),
        ("ada", "topics.delete", False), ("bob", "alerts.rule", True), ("ann", "alerts.rule", False),
        ("vic", "feed.score", True), ("vic", "topics.classify", True), ("bob", "feed.score", False),
        ("bob", "topics.classify", False), ("vic", "alerts.ack", True), ("bob", "alerts.ack", False)]


def test_every_action_of_the_roles_table_is_decided_for_every_role():
    """The table itself: a viewer changes nothing, an analyst everything but users/audit/settings, an admin all."""
    from engine.access import roles

    for action, (minimum, _) in roles.ACTIONS.items():
        if action.startswith("sign_"):
            continue
        assert access.can(Actor("v", "viewer"), action) is False, action
        assert access.can(Actor("a", "analyst"), action) is (minimum != "admin"), action
        assert access.can(Actor("d", "admin"), action, owner="someone else") is True, action
        owned = roles.ACTIONS[action][1]
        assert access.can(Actor("a", "analyst"), action, owner="someone else") is (minimum != "admin" and not owned)


def test_library_calls_without_an_actor_act_as_the_local_admin(store, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ops")
    datasets.import_file(store, labelled_csv(), "l.csv", "fpb")
    [row] = rows_of(store, "dataset.import")
    assert (row["actor"], row["role"]) == ("cli:ops", "admin")
    assert datasets.get(store, "fpb")["created_by"] == "ops"
    with pytest.raises(Forbidden, match="no active account 'nobody'"):
        datasets.delete(store, "fpb:1", confirm=True, actor="nobody")


def test_wrong_passwords_are_slowed_then_lock_the_account_for_a_growing_time(store, monkeypatch):
    users.add(store, "ann", "analyst", PASSWORD)
    pauses, now = [], [1_000_000.0]
    monkeypatch.setattr(users, "pause", pauses.append)
    monkeypatch.setattr(users, "clock", lambda: now[0])
    for _ in range(users.LOCK_AFTER - 1):
        with pytest.raises(Forbidden, match="do not match"):
            users.sign_in(store, "ann", "guess")
    assert pauses == [0.5, 1.0, 1.5, 2.0]  # each failure waits longer
    with pytest.raises(Forbidden, match="locked for 30 s"):
        users.sign_in(store, "ann", "guess")
    # locked: even the right password is refused, without being checked
    with pytest.raises(Forbidden, match="locked for 30 s more"):
        users.sign_in(store, "ann", PASSWORD)
    now[0] += 31  # the lock ends; another wrong password locks for twice as long
    with pytest.raises(Forbidden, match="locked for 60 s"):
        users.sign_in(store, "ann", "guess")
    now[0] += 30
    with pytest.raises(Forbidden, match="locked"):
        users.sign_in(store, "ann", PASSWORD)
    now[0] += 31
    assert users.sign_in(store, "ann", PASSWORD) == Actor("ann", "analyst")
    assert users.get(store, "ann")["failures"] == 0
    failed = rows_of(store, "sign_in.failed")
    assert len(failed) == 8 and {r["actor"] for r in failed} == {"ann"}
    assert sum(r["detail"].get("reason") == "locked" for r in failed) == 2
    assert len(rows_of(store, "sign_in")) == 1
    # an unknown name is answered as a wrong password, and recorded
    with pytest.raises(Forbidden, match="do not match"):
        users.sign_in(store, "mallory", "x")
    assert rows_of(store, "sign_in.failed")[0]["actor"] == "mallory"
    # an admin's reset clears a lock
    for _ in range(users.LOCK_AFTER):
        with pytest.raises(Forbidden):
            users.sign_in(store, "ann", "guess")
    users.reset_password(store, "ann", "a brand new password")
    assert users.sign_in(store, "ann", "a brand new password").name == "ann"


def test_sessions_survive_until_logout_idle_expiry_or_disabling(store, people, monkeypatch):
    now = [2_000_000.0]
    monkeypatch.setattr(users, "clock", lambda: now[0])
    token = users.start_session(store, people["ann"])
    assert users.session_actor(store, token) == Actor("ann", "analyst")
    assert users.session_actor(store, token + "x") is None
    now[0] += users.SESSION_IDLE_S - 100
    assert users.session_actor(store, token) is not None  # used: kept alive
    now[0] += users.SESSION_IDLE_S - 100
    assert users.session_actor(store, token) is not None
    now[0] += users.SESSION_IDLE_S + 1
    assert users.session_actor(store, token) is None  # idle too long
    token = users.start_session(store, people["ann"])
    users.end_session(store, token, people["ann"])
    assert users.session_actor(store, token) is None
    assert rows_of(store, "sign_out")[0]["actor"] == "ann"
    token = users.start_session(store, people["bob"])
    users.set_disabled(store, "bob", actor=people["ada"])
    assert users.session_actor(store, token) is None
    assert store.execute("SELECT token_sha256 FROM sessions").fetchall() == [] or token not in str(
        store.execute("SELECT * FROM sessions").fetchall())


def test_the_audit_log_is_append_only(store, people):
    assert audit.read(store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.execute("DELETE FROM audit_log")


def test_job_processes_get_no_secrets(monkeypatch):
    monkeypatch.setenv("BELLWETHER_PASSWORD", "shared")
    monkeypatch.setenv("BELLWETHER_ADMIN_PASSWORD", "first admin pw")
    monkeypatch.setenv("BELLWETHER_HOME", "/tmp/somewhere")
    env = settings.without_secrets()
    assert "BELLWETHER_PASSWORD" not in env and "BELLWETHER_ADMIN_PASSWORD" not in env
    assert env["BELLWETHER_HOME"] == "/tmp/somewhere"


def _cli(*args, stdin="", home=None):
    import os

    env = {**os.environ, "BELLWETHER_HOME": str(home), "BELLWETHER_USER": "ops"}
    return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.process
def test_cli_users_and_audit(home, tmp_path):
    assert _cli("users", "bind-address", home=home).stdout.strip() == "127.0.0.1"
    done = _cli("users", "add", "ada", "--role", "admin", stdin=PASSWORD + "\n", home=home)
    assert done.returncode == 0, done.stderr
    refused = _cli("users", "add", "bob", "--role", "viewer", stdin="short\n", home=home)
    assert refused.returncode == 2 and "at least 10 characters" in refused.stderr
    assert _cli("users", "set-role", "ada", "viewer", home=home).returncode == 2  # the last admin
    _cli("users", "add", "bob", "--role", "viewer", stdin=PASSWORD + "\n", home=home)
    listed = _cli("users", "list", home=home).stdout
    assert "ada" in listed and "bob" in listed and "viewer" in listed and PASSWORD not in listed
    assert _cli("users", "disable", "bob", home=home).returncode == 0
    assert _cli("users", "reset-password", "ada", stdin="another long password\n", home=home).returncode == 0
    bind = _cli("users", "bind-address", home=home)
    assert bind.stdout.strip() == "0.0.0.0" and "Accounts exist" in bind.stderr
    out = tmp_path / "audit.csv"
    _cli("audit", "--format", "csv", "--output", str(out), home=home)
    text = out.read_text(encoding="utf-8-sig")
    for action in ("users.add", "users.disable", "users.reset_password"):
        assert f"cli:ops,admin,{action}" in text
    assert PASSWORD not in text
    assert "users.add" in _cli("audit", "--action", "users", home=home).stdout


def test_single_sign_on_identities_map_to_accounts(store):
    users.add(store, "alice@bank.com", "analyst", sso=True)
    assert users.sso_actor(store, "Alice@Bank.com") == Actor("alice@bank.com", "analyst")
    with pytest.raises(Forbidden, match="users add mallory@bank.com --role viewer --sso"):
        users.sso_actor(store, "mallory@bank.com")
    with pytest.raises(Forbidden, match="do not match"):  # an SSO account has no password to guess
        users.sign_in(store, "alice@bank.com", "")
    with pytest.raises(Exception, match="not both"):
        users.add(store, "bob@bank.com", "viewer", PASSWORD, sso=True)
    assert [r["actor"] for r in rows_of(store, "sign_in")] == ["alice@bank.com"]
    assert rows_of(store, "sign_in.failed")[-1]["detail"]["reason"] == "sso identity without an active account"


def test_the_first_admin_from_the_environment_only_while_there_are_no_accounts(store):
    assert users.ensure_first_admin(store, None, None) is False
    assert users.ensure_first_admin(store, "root", PASSWORD) is True
    assert users.sign_in(store, "root", PASSWORD) == Actor("root", "admin")
    assert users.ensure_first_admin(store, "other", PASSWORD) is False  # accounts exist: never again
    assert [u["name"] for u in users.list_users(store)] == ["root"]


def test_live_feed_sources_and_notification_channels_by_role_and_owner(store, people, monkeypatch):
    """Sources belong to the feed's creator (and admins); channels, which hold secrets and reach outside, to admins."""
    from engine.monitor import notify, sources

    monkeypatch.setenv("BELLWETHER_ALLOW_PRIVATE_SOURCES", "1")
    news = feed_csv([("2024-01-02 09:00", "Bank story")])
    feeds.import_file(store, news, "n.csv", "wire", actor=people["ann"])
    url = "http://127.0.0.1:9/markets.rss"
    with pytest.raises(Forbidden, match="cannot change a feed's sources"):
        sources.add_source(store, "wire", url, actor=people["vic"])
    with pytest.raises(Forbidden, match="Only ann, who created it, or an administrator"):
        sources.add_source(store, "wire", url, actor=people["bob"])
    source = sources.add_source(store, "wire", url, actor=people["ann"])
    assert source["created_by"] == "ann"
    with pytest.raises(Forbidden):
        sources.remove_source(store, source["id"], actor=people["bob"])
    with pytest.raises(Forbidden):
        sources.set_current_model(store, "wire", None, actor=people["bob"])
    sources.remove_source(store, source["id"], actor=people["ada"])
    assert store["feed_sources"].count == 0
    with pytest.raises(Forbidden, match="cannot set up notification channels: only an administrator"):
        notify.add_channel(store, "desk", "webhook", url="http://127.0.0.1:9/hook", actor=people["ann"])
    assert store["notify_channels"].count == 0
    notify.add_channel(store, "desk", "webhook", url="http://127.0.0.1:9/hook", actor=people["ada"])
    with pytest.raises(Forbidden):
        notify.remove_channel(store, "desk", actor=people["ann"])
    actions = [r["action"] for r in store.query("SELECT action FROM audit_log WHERE action IN "
                                                 "('feed.sources', 'notify.channels') ORDER BY id")]
    assert actions.count("feed.sources") >= 3 and "notify.channels" in actions
