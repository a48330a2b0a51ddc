"""What each role sees on the pages (AppTest), the Admin page, and the modes without accounts."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from engine.access import audit, users
from engine.data import datasets
from tests.conftest import ROOT
from tests.helpers import PASSWORD, add_user, make_finished_run, signed_in_app, texts


@pytest.fixture
def team(store, monkeypatch):
    monkeypatch.setattr(users, "pause", lambda s: None)
    for name, role in [("ada", "admin"), ("ann", "analyst"), ("bob", "analyst"), ("vic", "viewer")]:
        add_user(store, name, role)
    rows = "\n".join(f"Shares {'rose' if i % 2 else 'fell'} {i},{'positive' if i % 2 else 'negative'}" for i in range(30))
    datasets.import_file(store, ("text,label\n" + rows).encode(), "l.csv", "fpb", actor="ann")
    return store


def labels(at) -> list[str]:
    return [b.label for b in at.button]


def test_the_data_page_by_role(team):
    viewer = signed_in_app("data", "vic")
    assert not viewer.get("file_uploader") and not [b for b in labels(viewer) if b.startswith("Delete")]
    assert "Signed in as **vic** (viewer)" in texts(viewer)
    assert "Data directory" not in texts(viewer)  # server paths: admins only
    other = signed_in_app("data", "bob")
    assert other.get("file_uploader") and not [b for b in labels(other) if b.startswith("Delete")]  # not his
    owner = signed_in_app("data", "ann")
    assert "Delete fpb:1…" in labels(owner)
    admin = signed_in_app("data", "ada")
    assert "Delete fpb:1…" in labels(admin) and "Data directory" in texts(admin)


def test_the_owner_deletes_and_the_audit_log_shows_it_on_the_admin_page(team):
    at = signed_in_app("data", "ann")
    at.button(key="delete").click().run()
    at.button(key="delete_yes").click().run()
    assert "Deleted dataset fpb:1." in texts(at)
    admin = signed_in_app("admin", "ada")
    assert admin.title[0].value == "Admin"
    log = admin.dataframe[1].value
    deleted = log[log["action"] == "dataset.delete"]
    assert list(deleted["actor"]) == ["ann"] and list(deleted["object"]) == ["dataset:fpb:1"]
    assert {"sign_in", "dataset.import"} <= set(log["action"])


def test_the_admin_page_refuses_others_and_manages_users(team):
    analyst = signed_in_app("admin", "ann")  # hidden from an analyst's navigation; its link explains the refusal
    assert "Your role (analyst) cannot manage users: only an administrator can." in texts(analyst)
    assert not analyst.dataframe and not analyst.text_input
    admin = signed_in_app("admin", "ada")
    people = admin.dataframe[0].value
    assert set(people["name"]) == {"ada", "ann", "bob", "vic"}
    admin.text_input[0].input("carl")
    admin.text_input[1].input(PASSWORD)
    admin.button[0].click().run()  # Add user (the form's button is first)
    assert "Added carl (analyst)." in texts(admin)
    assert users.get(team, "carl")["role"] == "analyst"
    assert audit.read(team, action="users.add")[0]["actor"] == "ada"


def test_a_runs_cancel_is_offered_to_its_creator_and_admins_only(team, tiny_text_model):
    from engine.training import finetune

    run_id = finetune.submit(team, "fpb", base_model=str(tiny_text_model), preset="quick", actor="ann")
    for name, offered in [("vic", False), ("bob", False), ("ann", True), ("ada", True)]:
        at = signed_in_app("runs", name, run=str(run_id))
        assert ("Cancel" in labels(at)) is offered, name


def test_without_accounts_the_dashboard_is_the_local_admin_on_this_machine_only(store, monkeypatch):
    monkeypatch.setenv("BELLWETHER_USER", "ops")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run().run()
    assert at.title[0].value == "Data" and "Signed in as **ops** (admin)" in texts(at)
    assert "Local mode" in texts(at)
    # listening on the network without accounts: nobody gets in, and the page says what to do
    import views._shared

    monkeypatch.setattr(views._shared, "LOOPBACK", ("203.0.113.7",))  # whatever it listens on is now "the network"
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run().run()
    assert at.title[0].value == "Bellwether" and not at.text_input
    assert "no accounts yet" in at.error[0].value and "python -m engine users add" in at.error[0].value


def test_the_retired_shared_password_signs_nobody_in(store, monkeypatch):
    monkeypatch.setenv("BELLWETHER_PASSWORD", "s3cret")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run().run()
    assert at.title[0].value == "Bellwether" and not at.text_input
    assert "replaced by personal accounts" in at.error[0].value


def test_a_locked_account_is_told_so_on_the_form(team):
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run().run()
    for _ in range(users.LOCK_AFTER):
        at.text_input[0].input("bob")
        at.text_input[1].input("guess")
        at.button[0].click().run()
    assert "locked for 30 s" in at.error[0].value
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert "locked" in at.error[0].value and at.title[0].value == "Bellwether"


def test_server_paths_are_shown_to_admins_only(team, tiny_text_model):
    run_id = make_finished_run(team, tiny_text_model, metrics={"macro_f1": 0.5, "accuracy": 0.5})
    analyst = signed_in_app("runs", "ann", run=str(run_id))
    assert "Model saved in" not in texts(analyst) and str(tiny_text_model) not in texts(analyst)
    admin = signed_in_app("runs", "ada", run=str(run_id))
    assert f"Model saved in `{tiny_text_model}`" in texts(admin)
