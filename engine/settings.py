"""Every environment variable Bellwether reads, in one place, each with a typed accessor.

Nothing else in the product reads ``BELLWETHER_*`` variables: call the accessor here. A value that cannot be used
(``BELLWETHER_HEARTBEAT_S=fast``) is refused with :class:`SettingError`, a plain sentence naming the variable and
what it must be, instead of a crash or a silent default. Unset or empty means the default. ``SETTINGS`` lists them
all (the README's table of settings is checked against it by tests/test_architecture.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError


class SettingError(UserError):
    """An environment variable holds a value Bellwether cannot use."""


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "path", "text", "number", "whole number", "flag", "choice"
    default: str
    doc: str
    audience: str = "operator"  # "operator" (people who run Bellwether), "test" (tests and benchmarks only)
    secret: bool = False  # never passed on to job processes (without_secrets)


SETTINGS: list[Setting] = [
    Setting("BELLWETHER_HOME", "path", "~/.bellwether", "the data directory: the SQLite store, runs/ and uploads/"),
    Setting("BELLWETHER_USER", "text", "$USER",
            "the command line's name: it acts as a local administrator, recorded as cli:NAME"),
    Setting("BELLWETHER_PASSWORD", "text", "",
            "retired shared password: signs nobody in; while set without accounts, the dashboard refuses everyone",
            secret=True),
    Setting("BELLWETHER_ADMIN_USER", "text", "", "on first start, with no accounts yet: the first admin's name"),
    Setting("BELLWETHER_ADMIN_PASSWORD", "text", "",
            "on first start, with no accounts yet: the first admin's password (10+ characters)", secret=True),
    Setting("BELLWETHER_CONCURRENCY_CPU", "whole number", "1", "jobs run at once on the CPU"),
    Setting("BELLWETHER_CONCURRENCY_CUDA", "whole number", "1", "jobs run at once on the GPU"),
    Setting("BELLWETHER_DEVICE_SLOT", "choice", "", "force new jobs onto 'cpu' or 'cuda' (default: cuda when present)"),
    Setting("BELLWETHER_HEARTBEAT_S", "number", "5", "seconds between a running job's heartbeats"),
    Setting("BELLWETHER_HEARTBEAT_TIMEOUT_S", "number", "90", "a job silent this many seconds is marked failed"),
    Setting("BELLWETHER_CANCEL_GRACE_S", "number", "60",
            "seconds a cancel waits for a job to stop by itself before SIGTERM (as long again before SIGKILL)"),
    Setting("BELLWETHER_CPU_BF16", "flag", "", "1 or 0 overrides the check for a CPU that computes bfloat16 natively"),
    Setting("BELLWETHER_LOGGING_STEPS", "whole number", "5", "training steps between logged losses"),
    Setting("BELLWETHER_READ_MEMORY_MB", "whole number", "4096",
            "memory (MB of address space) the child process that reads one uploaded file may use"),
    Setting("BELLWETHER_ALLOW_DOWNLOADS", "flag", "0",
            "1 lets base models named by hub id download (into the data directory, within the size cap)"),
    Setting("BELLWETHER_DOWNLOAD_MAX_MB", "whole number", "2048", "the largest base model download, in MB"),
    Setting("BELLWETHER_ALLOW_PRIVATE_SOURCES", "flag", "0",
            "1 lets feed sources, webhooks and mail servers be private, loopback or link-local addresses (refused by default)"),
    Setting("BELLWETHER_MIN_POLL_INTERVAL_S", "number", "60", "the shortest interval a feed source may be polled at"),
    Setting("BELLWETHER_SOURCE_TIMEOUT_S", "number", "20", "seconds a source's fetch may take in all before it fails"),
    Setting("BELLWETHER_SOURCE_MAX_BYTES", "whole number", "10000000",
            "the largest response or file a source may deliver; larger ones are refused"),
    Setting("BELLWETHER_NOTIFY_RETRY_S", "number", "30",
            "seconds before a failed notification is retried (doubling each time, 6 tries in all)"),
    Setting("BELLWETHER_DASHBOARD_URL", "text", "http://localhost:8501",
            "the dashboard's address as analysts reach it: the base of links in notifications"),
    Setting("BELLWETHER_MONITOR_REFRESH_S", "number", "15", "seconds between the open Monitor page's refreshes"),
    Setting("BELLWETHER_LANGUAGE", "text", "en",
            "the interface language for whoever has not chosen one, and for the command line: en or zh_CN (简体中文)"),
    Setting("BELLWETHER_JOB_STDOUT_IS_LOG", "flag", "0", "a job logs to standard output instead of its log file",
            "test"),
    Setting("BELLWETHER_DDP_CPU_PROCS", "whole number", "0",
            "train with this many gloo processes on the CPU (distributed training without a GPU)", "test"),
    Setting("BELLWETHER_TEST_STEP_DELAY_S", "number", "0",
            "seconds of sleep after each training step and before each chunk a score job reads", "test"),
    Setting("BELLWETHER_KEEP_SOUP_MEMBERS", "flag", "0",
            "a model soup keeps each of its runs' weights in `runs/<id>/members/` after saving its model (`bench "
            "quality --keep` sets it for `bench.ensemble --members`)", "test"),
    Setting("BELLWETHER_BENCH_SIZE", "choice", "", "tiny, quick or full: the benchmarks' data size", "test"),
    Setting("BELLWETHER_BENCH_MODEL", "path", "", "a base model folder the benchmarks use instead of the default",
            "test"),
    Setting("BELLWETHER_BENCH_INPROCESS", "flag", "0", "benchmarks run their cases in one process", "test"),
    Setting("BELLWETHER_SHARED_DATA", "path", "../shared/data", "where the benchmarks find the real data", "test"),
]
_BY_NAME = {s.name: s for s in SETTINGS}


def _raw(name: str) -> str:
    if name not in _BY_NAME:  # a typo here would be read as "unset" forever
        raise KeyError(f"{name} is not a Bellwether setting")
    return os.environ.get(name, "").strip()


def _number(name: str, default: float, minimum: float = 0.0) -> float:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise SettingError(f"{name} must be a number of at least {minimum:g}, for example {default:g} (it is '{raw}'). "
                           "Fix or unset it.")
    return value


def _whole(name: str, default: int, minimum: int = 0) -> int:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingError(f"{name} must be a whole number of at least {minimum}, for example {default} (it is "
                           f"'{raw}'). Fix or unset it.")
    return value


def _flag(name: str) -> bool | None:
    """True for 1/true/yes/on, False for 0/false/no/off, None when unset."""
    raw = _raw(name).lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be 1 or 0 (it is '{raw}'). Fix or unset it.")


def _choice(name: str, choices: tuple[str, ...]) -> str | None:
    raw = _raw(name).lower()
    if not raw:
        return None
    if raw not in choices:
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise SettingError(f"{name} must be {listed} (it is '{raw}'). Fix or unset it.")
    return raw


# --- storage and people -------------------------------------------------------------------------------------------


def home() -> Path:
    return Path(_raw("BELLWETHER_HOME") or Path.home() / ".bellwether").expanduser()


def user() -> str | None:
    return _raw("BELLWETHER_USER") or None


def password() -> str:
    return os.environ.get("BELLWETHER_PASSWORD", "")  # not stripped: spaces may be part of a password


def read_memory_mb() -> int:
    return _whole("BELLWETHER_READ_MEMORY_MB", 4096, minimum=256)


def allow_downloads() -> bool:
    return bool(_flag("BELLWETHER_ALLOW_DOWNLOADS"))


def download_max_mb() -> int:
    return _whole("BELLWETHER_DOWNLOAD_MAX_MB", 2048, minimum=1)


def admin_user() -> str | None:
    return _raw("BELLWETHER_ADMIN_USER") or None


def admin_password() -> str | None:
    return os.environ.get("BELLWETHER_ADMIN_PASSWORD", "") or None


def shown(audience: str = "operator") -> list[tuple[Setting, str]]:
    """Each setting of ``audience`` with its value as an admin may see it: secrets only as set / unset."""
    out = []
    for s in SETTINGS:
        if s.audience == audience:
            raw = os.environ.get(s.name, "") if s.secret else _raw(s.name)
            out.append((s, ("(set, secret)" if raw else "(unset)") if s.secret else raw or f"(default: {s.default})"))
    return out


def without_secrets(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment (default: this process's) without the secret settings, for a child process."""
    env = dict(os.environ if env is None else env)
    for name in [s.name for s in SETTINGS if s.secret]:
        env.pop(name, None)
    return env


# --- jobs -----------------------------------------------------------------------------------------------------------


def concurrency(slot: str) -> int:
    return _whole(f"BELLWETHER_CONCURRENCY_{slot.upper()}", 1, minimum=1)


def device_slot() -> str | None:
    return _choice("BELLWETHER_DEVICE_SLOT", ("cpu", "cuda"))


def heartbeat_s() -> float:
    return _number("BELLWETHER_HEARTBEAT_S", 5.0, minimum=0.01)


def heartbeat_timeout_s() -> float:
    return _number("BELLWETHER_HEARTBEAT_TIMEOUT_S", 90.0, minimum=0.01)


def cancel_grace_s() -> float:
    return _number("BELLWETHER_CANCEL_GRACE_S", 60.0)


def job_stdout_is_log() -> bool:
    return bool(_flag("BELLWETHER_JOB_STDOUT_IS_LOG"))


# --- training and scoring -------------------------------------------------------------------------------------------


def cpu_bf16() -> bool | None:
    """True / False when forced, None to check the processor."""
    return _flag("BELLWETHER_CPU_BF16")


def logging_steps() -> int:
    return _whole("BELLWETHER_LOGGING_STEPS", 5, minimum=1)


def ddp_cpu_procs() -> int:
    return _whole("BELLWETHER_DDP_CPU_PROCS", 0)


def test_step_delay_s() -> float:
    return _number("BELLWETHER_TEST_STEP_DELAY_S", 0.0)


def keep_soup_members() -> bool:
    """A model soup keeps its runs' weights after its model is saved (benchmarks: ``bench.ensemble --members``)."""
    return bool(_flag("BELLWETHER_KEEP_SOUP_MEMBERS"))


# --- live feeds and notifications -----------------------------------------------------------------------------------


def allow_private_sources() -> bool:
    return bool(_flag("BELLWETHER_ALLOW_PRIVATE_SOURCES"))


def min_poll_interval_s() -> float:
    return _number("BELLWETHER_MIN_POLL_INTERVAL_S", 60.0, minimum=0.1)


def source_timeout_s() -> float:
    return _number("BELLWETHER_SOURCE_TIMEOUT_S", 20.0, minimum=0.1)


def source_max_bytes() -> int:
    return _whole("BELLWETHER_SOURCE_MAX_BYTES", 10_000_000, minimum=1000)


def notify_retry_s() -> float:
    return _number("BELLWETHER_NOTIFY_RETRY_S", 30.0, minimum=0.01)


def dashboard_url() -> str:
    return (_raw("BELLWETHER_DASHBOARD_URL") or "http://localhost:8501").rstrip("/")


def language() -> str | None:
    return _raw("BELLWETHER_LANGUAGE").replace("-", "_") or None


def monitor_refresh_s() -> float:
    return _number("BELLWETHER_MONITOR_REFRESH_S", 15.0, minimum=1.0)


# --- benchmarks -----------------------------------------------------------------------------------------------------


def bench_size() -> str | None:
    return _choice("BELLWETHER_BENCH_SIZE", ("tiny", "quick", "full"))


def bench_model() -> str | None:
    return _raw("BELLWETHER_BENCH_MODEL") or None


def bench_inprocess() -> bool:
    return bool(_flag("BELLWETHER_BENCH_INPROCESS"))


def shared_data() -> Path | None:
    raw = _raw("BELLWETHER_SHARED_DATA")
    return Path(raw).expanduser() if raw else None
