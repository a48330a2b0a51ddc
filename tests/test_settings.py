"""engine.settings: every BELLWETHER_* variable read in one place; a bad value is refused in plain words."""

from __future__ import annotations

import pytest

from engine import settings
from engine.jobs import queue


def test_defaults_when_unset_or_empty(monkeypatch):
    for name in ("BELLWETHER_HEARTBEAT_S", "BELLWETHER_CONCURRENCY_CPU", "BELLWETHER_LOGGING_STEPS", "BELLWETHER_CPU_BF16"):
        monkeypatch.setenv(name, "")
    assert settings.heartbeat_s() == 5.0 and queue.heartbeat_interval() == 5.0
    assert settings.concurrency("cpu") == 1 and settings.logging_steps() == 5
    assert settings.cpu_bf16() is None


@pytest.mark.parametrize("name, value, accessor, said", [
    ("BELLWETHER_HEARTBEAT_TIMEOUT_S", "soon", settings.heartbeat_timeout_s, "must be a number"),
    ("BELLWETHER_CANCEL_GRACE_S", "-3", settings.cancel_grace_s, "must be a number of at least 0"),
    ("BELLWETHER_CONCURRENCY_CPU", "two", lambda: settings.concurrency("cpu"), "must be a whole number of at least 1"),
    ("BELLWETHER_CONCURRENCY_CUDA", "0", lambda: settings.concurrency("cuda"), "must be a whole number of at least 1"),
    ("BELLWETHER_LOGGING_STEPS", "5.5", settings.logging_steps, "must be a whole number"),
    ("BELLWETHER_DDP_CPU_PROCS", "many", settings.ddp_cpu_procs, "must be a whole number"),
    ("BELLWETHER_CPU_BF16", "maybe", settings.cpu_bf16, "must be 1 or 0"),
    ("BELLWETHER_DEVICE_SLOT", "tpu", settings.device_slot, "must be cpu or cuda"),
])
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch, name, value, accessor, said):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingError) as err:
        accessor()
    assert str(err.value).startswith(f"{name} {said}") and f"(it is '{value}')" in str(err.value)
    assert "Fix or unset it." in str(err.value)


def test_values_are_parsed(monkeypatch):
    monkeypatch.setenv("BELLWETHER_CONCURRENCY_CUDA", "3")
    monkeypatch.setenv("BELLWETHER_CPU_BF16", "0")
    monkeypatch.setenv("BELLWETHER_DEVICE_SLOT", "CUDA")
    monkeypatch.setenv("BELLWETHER_HEARTBEAT_S", "0.5")
    assert settings.concurrency("cuda") == 3 and settings.cpu_bf16() is False
    assert settings.device_slot() == "cuda" and queue.default_slot() == "cuda" and settings.heartbeat_s() == 0.5


def test_an_unknown_name_is_a_programming_error():
    with pytest.raises(KeyError):
        settings._raw("BELLWETHER_NO_SUCH_THING")


def test_the_cli_says_which_variable_is_wrong(home, monkeypatch, tmp_path, capsys):
    """A bad value reaches the analyst as one plain line and status 2, and nothing is queued."""
    from engine.cli.main import main

    csv = tmp_path / "s.csv"
    csv.write_text("text,label\n" + "".join(f"good news {i},pos\nbad news {i},neg\n" for i in range(20)))
    assert main(["dataset", "import", str(csv), "--name", "s", "--yes"]) == 0
    monkeypatch.setenv("BELLWETHER_DEVICE_SLOT", "gpu")
    capsys.readouterr()
    assert main(["train", "--dataset", "s", "--no-worker"]) == 2
    assert "BELLWETHER_DEVICE_SLOT must be cpu or cuda (it is 'gpu')" in capsys.readouterr().err
    assert main(["runs", "list", "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() in ("[]", "")
