"""The hidden commands the supervisor and torchrun start: ``python -m engine _job ID`` and ``_ddp ID``.

This is where a job's kind meets the code that does the work, so that engine.jobs (the queue, the supervisor, the
job process) imports neither training nor monitoring: a 'train' job runs engine.training.finetune.run
(engine.training.generation.run for task 'generation'), a 'score'
job runs engine.monitor.scoring.run, or engine.monitor.topics.run when its config says ``{"purpose": "topics"}``.
"""

from __future__ import annotations

from typing import Callable

from engine import i18n
from engine.errors import UserError
from engine.jobs import process
from engine.i18n import _


def register(subparsers) -> None:
    j = subparsers.add_parser("_job")  # hidden: the supervisor's entry point for one job
    j.add_argument("id", type=int)
    j.set_defaults(func=lambda a: run_job(a.id))
    d = subparsers.add_parser("_ddp")  # hidden: one torchrun worker
    d.add_argument("id", type=int)
    d.set_defaults(func=_ddp)


def runner_for(job: dict) -> Callable:
    """The function that does a job's work. Imported here, not at the top: a job process loads only what its kind
    needs (torch and transformers for every kind, but not the other kind's modules)."""
    if job["kind"] == "train" and job.get("task") == "generation":
        from engine.training import generation  # here, not at the top: only a generation run needs it

        return generation.run
    if job["kind"] == "train":
        from engine.training import finetune  # here, not at the top: a job process loads only its kind's code

        return finetune.run
    if job["kind"] == "score":
        from engine.monitor import scoring, topics  # here, not at the top: only a score job needs them

        return topics.run if topics.is_topics_job(job) else scoring.run
    raise UserError(_("No runner for jobs of kind {kind}.", kind=repr(job["kind"])))


def run_job(job_id: int) -> int:
    """Run job ``job_id`` in this process; the exit status."""
    return process.run_job(job_id, runner_for)


def _ddp(args) -> int:
    from engine.training import finetune  # only in a torchrun worker

    with i18n.using(i18n.DEFAULT):  # its UserError becomes the job's stored reason: English, like run_job's
        return finetune.ddp_worker(args.id)
