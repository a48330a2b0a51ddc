"""Run a reading function in a child process with a memory cap, so that no file can take the dashboard down.

The dashboard is one long-lived process shared by every analyst. Reading a hostile or huge upload (a workbook whose
one cell sits at XFD100000, a million-column CSV) in it could exhaust its memory; here the read runs in
``python -m engine.data.guarded``, whose address space is capped with ``resource.setrlimit(RLIMIT_AS)``
(``BELLWETHER_READ_MEMORY_MB``, default 4096). The file travels as a temporary file, the result comes back pickled
(only what the caller asked for: a preview, a candidate, an import report). A child that runs out of memory is
reported in plain words; an engine UserError comes back as the same UserError.

Only functions named in ``ALLOWED`` may be run (the child never runs a name it was sent otherwise).
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from engine import paths, settings
from engine.data import limits
from engine.errors import UserError
from engine.i18n import _, language, number, use

ROOT = Path(__file__).resolve().parents[2]  # where `-m engine...` is importable from, whatever the caller's cwd

ALLOWED = {
    "engine.data.ingest:read_file_in_child",
    "engine.data.readers:read_table_in_child",
    "engine.data.conll:read_conll",
    "engine.monitor.feeds:preview_in_child",
    "engine.monitor.feeds:import_in_child",
}


def call(function: str, data: bytes, file_name: str, **kwargs):
    """``function(data, file_name, **kwargs)`` run in a capped child process; its return value."""
    if function not in ALLOWED:
        raise ValueError(f"{function} may not run in a guarded child")
    limits.check_file_size(len(data), file_name)
    folder = paths.home() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    cap = settings.read_memory_mb()
    with tempfile.NamedTemporaryFile(dir=folder, prefix="upload-", delete=False) as handle:
        handle.write(data)
        data_path = handle.name
    try:
        request = pickle.dumps({"function": function, "data_path": data_path, "file_name": file_name,
                                "kwargs": kwargs, "memory_mb": cap, "language": language()})
        done = subprocess.run([sys.executable, "-m", "engine.data.guarded"], input=request, capture_output=True,
                              env=os.environ.copy(), cwd=ROOT, check=False)
    finally:
        Path(data_path).unlink(missing_ok=True)
    try:
        kind, value = pickle.loads(done.stdout) if done.stdout else ("crashed", done.stderr.decode(errors="replace"))
    except Exception:  # noqa: BLE001 - a child killed mid-write
        kind, value = "crashed", done.stderr.decode(errors="replace")
    if kind == "ok":
        return value
    if kind == "user_error":
        raise UserError(value)
    if kind == "memory" or done.returncode < 0:
        raise UserError(_(
            "{file_name} needs more than the {cap} MB of memory Bellwether gives to reading one file, so it was "
            "not read and nothing was saved. Split it into smaller files, or remove columns you do not need.",
            file_name=file_name, cap=number(cap)))
    raise RuntimeError(f"reading {file_name} failed in its child process: {str(value)[-2000:]}")


def _child() -> None:
    import resource

    request = pickle.loads(sys.stdin.buffer.read())
    cap = int(request["memory_mb"]) * 1024 * 1024
    out_of_memory = pickle.dumps(("memory", None))  # made before the cap: there may be no memory left to make it
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = sys.stdout.buffer
    try:
        use(request.get("language"))  # the caller's language: its plain messages come back in it
        if request["function"] not in ALLOWED:
            raise ValueError("not allowed")
        module, name = request["function"].split(":")
        function = getattr(importlib.import_module(module), name)
        data = Path(request["data_path"]).read_bytes()
        result = ("ok", function(data, request["file_name"], **request["kwargs"]))
        del data
        payload = pickle.dumps(result)
    except UserError as exc:
        payload = pickle.dumps(("user_error", str(exc)))
    except MemoryError:
        payload = out_of_memory
    out.write(payload)
    out.flush()


if __name__ == "__main__":
    _child()
