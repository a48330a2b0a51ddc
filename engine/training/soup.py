"""Model soups: one run trains its settings ``soup`` times from different seeds and averages the weights into one model.

Over two sets of 5 seeds on fpb (docs/benchmarks.md, "Model soups of Balanced runs") the uniform average of three
Balanced runs scored as their averaged predictions would, in one ordinary model: it lifted the worst draw (dev.csv
lowest 0.819-0.830 against single runs' 0.809-0.823) for three runs' training and one model's predictions.

A soup's runs ("members") train one after another in the run's process. Each finished member's weights are kept in
``runs/<id>/members/<i>.pt`` with its figures in ``<i>.json`` (the JSON last: its presence says the member is done),
and the run's ``checkpoints/`` folder is emptied (before the JSON is written) for the next member, so any
checkpoint there is the first unfinished member's. A cancelled or failed soup resumes where it stopped: finished members are read
back, the member in progress continues from its checkpoint, the rest train as planned. Once the run's model is saved, the members'
weights are deleted and their figures kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from engine import settings
from engine.jobs import overview

MAX_RUNS = 10
SEED_STEP = 1000  # member i trains with seed + 1000 i: disjoint from the members of the next few seeds


def runs(config: dict | None) -> int:
    """How many runs ``config``'s soup averages (1: an ordinary run)."""
    return overview.soup_runs(config)


def member_seeds(seed: int, count: int) -> list[int]:
    """The members' seeds: the run's own first, so a soup's first member is the single run of the same seed."""
    return [(int(seed) + SEED_STEP * i) % 2**31 for i in range(count)]


def average(state_dicts: list[dict]) -> dict:
    """The uniform average of ``state_dicts`` (same keys): floating-point tensors averaged in float32 and cast back,
    anything else (integer buffers such as position ids) taken from the first."""
    import torch

    if not state_dicts:
        raise ValueError("nothing to average")
    out = {}
    for key, first in state_dicts[0].items():
        if not torch.is_floating_point(first):
            out[key] = first.clone()
            continue
        total = first.detach().to(torch.float32).clone()
        for other in state_dicts[1:]:
            total += other[key].detach().to(torch.float32)
        out[key] = (total / len(state_dicts)).to(first.dtype)
    return out


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class Members:
    """The finished members of one run's soup, in ``job_dir/members``."""

    def __init__(self, job_dir: Path, seeds: list[int]):
        self.folder = Path(job_dir) / "members"
        self.checkpoints = Path(job_dir) / "checkpoints"
        self.seeds = list(seeds)

    def _weights(self, index: int) -> Path:
        return self.folder / f"{index}.pt"

    def _figures(self, index: int) -> Path:
        return self.folder / f"{index}.json"

    def done(self, index: int) -> bool:
        return self._figures(index).is_file() and self._weights(index).is_file()

    def figures(self, index: int) -> dict[str, Any]:
        return json.loads(self._figures(index).read_text())

    def weights(self, index: int) -> dict:
        import torch

        return torch.load(self._weights(index), map_location="cpu", weights_only=True)

    def finish(self, index: int, state_dict: dict, figures: dict[str, Any]) -> None:
        """Keep member ``index``'s weights and figures, then empty the checkpoints for the next member."""
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        plain = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        _write_atomic(self._weights(index), lambda p: torch.save(plain, p))
        # the checkpoints go before the figures say the member is done: whatever checkpoint a stopped run leaves is
        # always the first unfinished member's own, the one its resume continues
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        _write_atomic(self._figures(index), lambda p: p.write_text(json.dumps(figures)))

    def drop_weights(self) -> None:
        """After the run's model is saved: the members' weights go (each is a whole model), their figures stay."""
        if settings.keep_soup_members():  # a benchmark measures each run alone and other mixes of them
            return
        for index in range(len(self.seeds)):
            self._weights(index).unlink(missing_ok=True)
