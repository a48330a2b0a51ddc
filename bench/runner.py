"""Run one benchmark case in a child process of its own and read back its result with its peak RSS.

``run_case("bench.baselines:tutorial_recipe", {...})`` starts ``python -m bench.runner`` with the call on stdin; the
child writes ``{"result": ..., "peak_rss_mb": ...}`` to a file whose path it is given. Peak RSS is the child's own
``ru_maxrss``: what that case alone needed, interpreter and libraries included.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine import settings
from engine.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(usage / 1024, 1)


def in_process() -> bool:
    """BELLWETHER_BENCH_INPROCESS=1 (tests only): run cases in this process, so that a tiny run takes seconds.
    Peak RSS is then this process's, not the case's own."""
    return settings.bench_inprocess()


def _call(target: str, kwargs: dict):
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)(**kwargs)


def run_case(target: str, kwargs: dict, env: dict | None = None, timeout: float | None = None) -> dict:
    if in_process():
        start = time.perf_counter()
        result = _call(target, json.loads(json.dumps(kwargs)))
        result = result if isinstance(result, dict) else {"value": result}
        return {**result, "peak_rss_mb": peak_rss_mb(), "process_s": round(time.perf_counter() - start, 2)}
    with tempfile.TemporaryDirectory(prefix="bench-case-") as tmp:
        out = Path(tmp) / "result.json"
        child_env = {**os.environ, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), child_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        child_env.setdefault("TOKENIZERS_PARALLELISM", "false")
        child_env.setdefault("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "bench.runner", target, str(out)],
            input=json.dumps(kwargs), text=True, capture_output=True, cwd=str(ROOT), env=child_env, timeout=timeout,
        )
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            raise UserError(f"The benchmark case {target} failed (status {proc.returncode}):\n" + "\n".join(tail))
        payload = json.loads(out.read_text())
        result = payload["result"]
        if not isinstance(result, dict):
            result = {"value": result}
        result["peak_rss_mb"] = payload["peak_rss_mb"]
        result["process_s"] = round(time.perf_counter() - start, 2)
        return result


def _main(argv: list[str]) -> int:
    target, out = argv
    result = _call(target, json.loads(sys.stdin.read() or "{}"))
    Path(out).write_text(json.dumps({"result": result, "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
