"""The job queue and the processes that run jobs.

- ``queue``: the ``jobs`` table: enqueue, read, cancel, resume, follow (no process is started here).
- ``supervisor``: ``python -m engine worker``: starts queued jobs in their own processes and watches them.
- ``process``: inside a job's process: the context a runner gets, cooperative cancel, the recorded outcome.
- ``runs``: a training run as the rest of the product sees it: look-up, title, labels, finished runs.

Imports run queue <- process, supervisor, runs; nothing here imports training or monitoring (engine.cli.job maps a
job's kind to its runner).
"""
