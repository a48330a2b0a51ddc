"""Every job in one list: training runs, scoring and topic jobs, with why a queued one waits and how long each is
likely to take, as a range from the speed measured on this machine; and deleting finished ones.

- :func:`jobs` — the rows of the Jobs page and of ``python -m engine jobs``, newest first.
- :func:`waiting_reason` — "Behind run 4 (running), about 10-16 min." for a queued job. Jobs are named as people
  see them (engine.jobs.queue.label: run 4, scoring job 2, topics job 1) in the current language.
- :func:`remaining` — (low, high) seconds a job still needs: from its own progress when it runs, else from the
  speed earlier jobs of its kind measured here (training rows/s of the same base model, scored articles/s); the range
  is the spread of those measurements, wider when there are fewer.
- :func:`delete` — a finished, failed or cancelled job and its files (log, checkpoints, model, predictions, progress);
  refused while it is in use: a feed's current model, the model of a queued or running job, or a run whose scores or
  topics a feed holds.
"""

from __future__ import annotations

import shutil

from engine import access, db, i18n, paths
from engine.errors import UserError
from engine.i18n import _
from engine.jobs import queue
from engine.models import precision as precisions

GUESSED_TRAIN_SPEED = 40.0  # rows/s at max length 128 before anything was measured (the default model on 2 CPU cores)
GUESSED_SCORE_SPEED = 100.0  # articles/s before a scoring job was measured
RANGE = {0: (0.5, 2.5), 1: (0.8, 1.6)}  # (low, high) factors by how many measurements there are (more: their spread)
STARTUP_S = 15.0  # loading the model and the data before the first step


def has_status(conn, *statuses: str) -> bool:
    """Whether any job has one of these statuses."""
    marks = ", ".join("?" for _ in statuses)
    return conn.execute(f"SELECT 1 FROM jobs WHERE status IN ({marks}) LIMIT 1", list(statuses)).fetchone() is not None


kind_of = queue.kind_of  # 'training', 'scoring' or 'topics'
label = queue.label  # 'run 4', 'scoring job 5', 'topics job 6': each kind numbered on its own (engine.jobs.queue)


def kind_words(kind: str) -> str:
    """'training', 'scoring' or 'topics' in the current language."""
    return {queue.TRAINING: _("training"), queue.SCORING: _("scoring"), queue.TOPICS: _("topics")}.get(kind, kind)


def duration_words(low: float, high: float) -> str:
    """'about 2-4 min', 'under a minute', 'about 1-2 h'."""
    low, high = max(0.0, low), max(low, high)
    if high < 60:
        return _("under a minute")
    if high < 90 * 60:
        a, b = max(1, round(low / 60)), max(1, round(high / 60))
        return _("about {a} min", a=a) if a == b else _("about {a}-{b} min", a=a, b=b)
    a, b = f"{low / 3600:.1f}", f"{high / 3600:.1f}"
    return _("about {a} h", a=a) if a == b else _("about {a}-{b} h", a=a, b=b)


def _spread(speeds: list[float]) -> tuple[float, float]:
    """(slowest, fastest) speed to expect, from measured speeds (none: the caller's guess, widely)."""
    if len(speeds) >= 2:
        return min(speeds) * 0.85, max(speeds)
    return speeds[0] / RANGE[1][1], speeds[0] / RANGE[1][0]


# R-Drop sends every batch through the model twice: Balanced on fpb trained 1.7x as long with it (docs/benchmarks.md).
R_DROP_COST = 1.7


def r_drop_cost(config: dict | None) -> float:
    """How many times as long a training run takes for its R-Drop setting (1 without)."""
    return R_DROP_COST if float((config or {}).get("r_drop") or 0) > 0 else 1.0


def soup_runs(config: dict | None) -> int:
    """How many runs a training run's model soup trains one after another (1: an ordinary run)."""
    try:
        return max(1, int((config or {}).get("soup") or 1))
    except (TypeError, ValueError):
        return 1


# A text classifier with its word embeddings frozen (finetune's freeze_embeddings) skips their gradient and optimizer
# update: Quick on fpb trained 1.14-1.31x as fast with them frozen, interleaved seed by seed (docs/benchmarks.md,
# "Frozen word embeddings").
FROZEN_EMBEDDINGS_GAIN = 1.2


def frozen_gain(config: dict | None, task: str | None) -> float:
    """How many times as fast a run trains for its freeze_embeddings setting (only a text classifier without LoRA
    freezes its table; 1 otherwise)."""
    config = config or {}
    classifier = (task or "text-classification") == "text-classification"
    if classifier and config.get("freeze_embeddings") and not config.get("lora"):
        return FROZEN_EMBEDDINGS_GAIN
    return 1.0


def precision_speedup(slot: str | None, asked: str | None, task: str | None) -> float:
    """How many times its fp32 speed a run of ``task`` asking for precision ``asked`` will train at in queue ``slot``
    (engine.models.precision: bf16 on a CPU that computes it natively; 1 otherwise)."""
    kind = "cuda" if str(slot or "").startswith("cuda") else "cpu"
    return precisions.train_speedup(kind, precisions.training_precision(kind, asked, task))


def train_speeds(conn, base_model: str | None, slot: str | None) -> list[float]:
    """Training samples/s of the last finished runs of ``base_model`` here, as at max length 128 without R-Drop, in
    fp32 with its word embeddings trained (a CPU run in bf16, or one with them frozen, counts for its speed divided
    by that gain)."""
    speeds = []
    for row in conn.query(
            "SELECT metrics_json, config_json, device_json, task FROM jobs WHERE kind = 'train' "
            f"AND status = 'succeeded' AND base_model IS ? AND device_slot IS ? ORDER BY {queue.ORDER} DESC LIMIT 5",
            [base_model, slot]):
        sps = (db.loads(row["metrics_json"], {}) or {}).get("train_samples_per_second")
        if sps:
            config = db.loads(row["config_json"], {}) or {}
            device = db.loads(row["device_json"], {}) or {}
            gain = precisions.train_speedup(device.get("device"), device.get("precision"))
            gain *= frozen_gain(config, row["task"])
            speeds.append(float(sps) * (config.get("max_length") or 128) / 128 * r_drop_cost(config) / gain)
    return speeds


def _score_speeds(conn) -> list[float]:
    speeds = []
    for row in conn.query("SELECT metrics_json FROM jobs WHERE kind = 'score' AND status = 'succeeded' "
                          f"ORDER BY {queue.ORDER} DESC LIMIT 5"):
        aps = (db.loads(row["metrics_json"], {}) or {}).get("articles_per_s")
        if aps:
            speeds.append(float(aps))
    return speeds


def _work(conn, job: dict) -> float:
    """Rows (x epochs) a training run goes through, or articles a scoring / topics job has left."""
    config = job.get("config") if "config" in job else db.loads(job.get("config_json"), {}) or {}
    if job["kind"] == "train":
        n = conn.execute("SELECT COUNT(*) FROM dataset_rows WHERE dataset_id = ? AND split = 'train'",
                         [job.get("dataset_id")]).fetchone()[0]
        return float(n) * float(config.get("epochs") or 1) * r_drop_cost(config) * soup_runs(config)
    if (config or {}).get("purpose") == "topics":
        sql = ("SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS (SELECT 1 FROM article_topics t "
               "WHERE t.article_id = a.id AND t.origin = 'model' AND t.run_id = ?)")
    else:
        sql = ("SELECT COUNT(*) FROM articles a WHERE a.feed_id = ? AND NOT EXISTS (SELECT 1 FROM scores s "
               "WHERE s.article_id = a.id AND s.run_id = ?)")
    return float(conn.execute(sql, [job.get("feed_id"), job.get("model_run_id")]).fetchone()[0])


def remaining(conn, job: dict) -> tuple[float, float] | None:
    """(low, high) seconds the job still needs; None once it has finished."""
    if job["status"] not in queue.ACTIVE:
        return None
    kind = "train" if job["kind"] == "train" else "score"
    last = queue.last_progress(conn, job["id"], kind=kind)
    if job["status"] == "running" and last and last.get("total_steps") and last.get("elapsed_s"):
        done = last.get("step") or 0
        if done > 0:  # its own measured speed: the surest guide
            left = last["elapsed_s"] / done * max(0, last["total_steps"] - done)
            if last.get("eta_s") is not None:  # the runner's own, from the steps since it (re)started: right for a
                left = float(last["eta_s"])  # resumed run and for a model soup's later runs, whose steps count on
            return left * 0.9, left * 1.3 + 5
    config = job.get("config") if "config" in job else db.loads(job.get("config_json"), {}) or {}
    work = _work(conn, job)
    if job["kind"] == "train":
        speeds = train_speeds(conn, job.get("base_model"), job.get("device_slot"))
        scale = 128 / max(16, int(config.get("max_length") or 128))
        scale *= precision_speedup(job.get("device_slot"), config.get("precision"), job.get("task"))
        scale *= frozen_gain(config, job.get("task"))
        speeds = [s * scale for s in speeds]
        guess = GUESSED_TRAIN_SPEED * scale
    else:
        speeds = _score_speeds(conn)
        guess = GUESSED_SCORE_SPEED
    if speeds:
        slow, fast = _spread(speeds)
        low, high = work / fast, work / slow
    else:
        low, high = work / guess * RANGE[0][0], work / guess * RANGE[0][1]
    if job["status"] == "running" and last and last.get("elapsed_s"):  # started, no step yet
        low, high = max(0.0, low - last["elapsed_s"]), max(0.0, high - last["elapsed_s"])
    return low + STARTUP_S, high + STARTUP_S


def waiting_reason(conn, job: dict, worker_alive: bool | None = None) -> str | None:
    """Why a queued job has not started, in a sentence; None when it is not queued."""
    if job["status"] != "queued":
        return None
    slot = job.get("device_slot")
    ahead = [queue._decoded(dict(r)) for r in conn.query(
        f"SELECT * FROM jobs WHERE status IN ('queued', 'running') AND device_slot IS ? AND {queue.ORDER} < ? "
        f"ORDER BY {queue.ORDER}", [slot, queue.place(job)])]
    running = [j for j in ahead if j["status"] == "running"]
    running += [queue._decoded(dict(r)) for r in conn.query(
        f"SELECT * FROM jobs WHERE status = 'running' AND device_slot IS ? AND {queue.ORDER} > ?",
        [slot, queue.place(job)])]
    slots = queue.concurrency(slot or "cpu")
    if not ahead and len(running) < slots:
        if worker_alive is False:
            return _("No worker is running to start it. The dashboard starts one when you queue a job; on the "
                     "command line run: python -m engine worker")
        return _("Next in line: it starts within seconds.")
    low = high = 0.0
    for other in ahead:
        span = remaining(conn, other) or (0.0, 0.0)
        low, high = low + span[0], high + span[1]
    low, high = low / slots, high / slots
    first = ahead[0] if ahead else running[0]
    others = len(ahead) - 1
    values = {"job": label(first), "status": queue.status_words(first["status"]), "time": duration_words(low, high)}
    device = ("GPU" if slot == "cuda" else "CPU") if slot else None
    # one whole sentence per case (not n_(): tests/test_i18n.py reads the catalogue's single texts)
    if others == 1 and device:
        said = _("Behind {job} ({status}, on the {device}) and 1 more job queued before it, {time}.", device=device,
                 **values)
    elif others > 1 and device:
        said = _("Behind {job} ({status}, on the {device}) and {n} more jobs queued before it, {time}.",
                 device=device, n=others, **values)
    elif others == 1:
        said = _("Behind {job} ({status}) and 1 more job queued before it, {time}.", **values)
    elif others > 1:
        said = _("Behind {job} ({status}) and {n} more jobs queued before it, {time}.", n=others, **values)
    elif device:
        said = _("Behind {job} ({status}, on the {device}), {time}.", device=device, **values)
    else:
        said = _("Behind {job} ({status}), {time}.", **values)
    if worker_alive is False:
        said += " " + _("No worker is running: start one with python -m engine worker.")
    return said


def jobs(conn, limit: int | None = 200, worker_alive: bool | None = None) -> list[dict]:
    """Every job, newest first, as the Jobs page and ``python -m engine jobs`` show it."""
    out = []
    names = {r[0]: f"{r[1]}:{r[2]}" for r in conn.execute("SELECT id, name, version FROM datasets")}
    feeds = {r[0]: r[1] for r in conn.execute("SELECT id, name FROM feeds")}
    for job in queue.list_jobs(conn, limit=limit):
        kind = kind_of(job)
        if kind == queue.TRAINING:
            dataset = names.get(job.get("dataset_id"))
            what = _("train on {dataset}", dataset=dataset) if dataset else _("train on a deleted dataset")
        else:
            feed = feeds.get(job.get("feed_id"), _("(deleted)"))
            what = (_("tag topics of feed {feed} with run {run}", feed=feed, run=job.get("model_run_id"))
                    if kind == queue.TOPICS else
                    _("score feed {feed} with run {run}", feed=feed, run=job.get("model_run_id")))
        span = remaining(conn, job)
        progress = queue.last_progress(conn, job["id"], kind="train" if job["kind"] == "train" else "score")
        estimate = ""
        if span:
            time = duration_words(*span)
            estimate = _("left: {time}", time=time) if job["status"] == "running" else _("takes {time}", time=time)
        out.append({
            "id": job["id"], "number": queue.number(job), "ref": queue.reference(job), "kind": kind,
            "label": label(job), "name": job.get("name") or "", "what": what,
            "status": job["status"], "created_by": job.get("created_by") or "", "created_at": job["created_at"],
            "started_at": job.get("started_at"), "finished_at": job.get("finished_at"),
            "step": (progress or {}).get("step"), "total_steps": (progress or {}).get("total_steps"),
            "remaining_s": list(span) if span else None,
            "estimate": estimate,
            "waiting": waiting_reason(conn, job, worker_alive) or "",
            "error": i18n.shown(job.get("error")),
        })
    return out


def in_use(conn, job: dict) -> list[str]:
    """Why a job cannot be deleted now, in plain sentences (none: it can)."""
    reasons = []
    if job["status"] in queue.ACTIVE:
        reasons.append(_("{job} is {status}: cancel it first.", job=label(job, start=True),
                         status=queue.status_words(job["status"])))
    if job["kind"] != "train":
        return reasons
    for name, in conn.execute("SELECT name FROM feeds WHERE current_model = ?", [job["id"]]):
        reasons.append(_("It is the current model of feed '{name}': choose another model for that feed first.",
                         name=name))
    users = [queue._decoded(dict(r)) for r in conn.query(
        f"SELECT * FROM jobs WHERE model_run_id = ? AND status IN ('queued', 'running') ORDER BY {queue.ORDER}",
        [job["id"]])]
    if users:
        reasons.append(_("Queued or running jobs use its model ({jobs}): wait for them or cancel them first.",
                         jobs=", ".join(label(u) for u in users)))
    scored = [r[0] for r in conn.execute(
        "SELECT DISTINCT f.name FROM scores s JOIN articles a ON a.id = s.article_id JOIN feeds f ON f.id = a.feed_id "
        "WHERE s.run_id = ? UNION SELECT DISTINCT f.name FROM article_topics t JOIN articles a ON a.id = t.article_id "
        "JOIN feeds f ON f.id = a.feed_id WHERE t.origin = 'model' AND t.run_id = ?", [job["id"], job["id"]])]
    if scored:
        reasons.append(_("Feed {feeds} holds its scores or topics, which the Monitor shows: keep the run while you need "
                         "them.", feeds=", ".join(repr(n) for n in sorted(scored))))
    return reasons


def delete(conn, job_id: int, confirm: bool = False, actor=None) -> dict:
    """Delete a finished, failed or cancelled job with its files; refused while in use (:func:`in_use`). Needs
    ``confirm``. An analyst deletes only their own jobs; an admin anyone's."""
    job = queue.get(conn, job_id)
    who = access.check(conn, actor, "run.delete", f"job:{job['id']}", owner=job.get("created_by"))
    if not confirm:
        raise UserError(_("Deleting {job} and its files cannot be undone. Confirm to delete it (on the command "
                          "line, add --yes).", job=label(job)))
    with db.transaction(conn):
        job = queue.get(conn, job_id)  # again, inside the transaction: its state may have changed
        reasons = in_use(conn, job)
        if reasons:
            raise UserError(_("{job} cannot be deleted now. {reasons}", job=label(job, start=True),
                              reasons=" ".join(reasons)))
        for table, column in (("progress", "job_id"), ("predictions", "run_id"), ("evaluations", "run_id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", [job["id"]])
        conn.execute("DELETE FROM jobs WHERE id = ?", [job["id"]])
        access.record(conn, who, "run.delete", f"job:{job['id']}",
                      {"kind": job["kind"], "status": job["status"], "created_by": job.get("created_by")})
    folder = paths.runs_dir() / str(int(job["id"]))
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    return job


def speeds_note(conn) -> str:
    """Where the estimates come from, in a sentence."""
    if not conn.execute("SELECT 1 FROM jobs WHERE status = 'succeeded' LIMIT 1").fetchone():
        return _("Estimates are rough guesses until a job has finished on this machine; they narrow as jobs are "
                 "measured.")
    return _("Estimates are ranges from the speed the last finished jobs of the same kind measured on this machine; "
             "a busy machine makes a job take longer.")
