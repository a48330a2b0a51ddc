"""The benchmark data: ``../shared/data/fpb`` train/dev and the news headlines, with the sizes each mode uses."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import settings
from engine.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SEED = 42
LABELS = ["negative", "neutral", "positive"]
NEWS_FILES = ["cnbc_headlines.csv", "guardian_headlines.csv", "reuters_headlines.csv"]


def shared_dir() -> Path:
    return settings.shared_data() or ROOT.parent / "shared" / "data"


@dataclass
class Sizes:
    """How much of the data a mode uses (None: all of it) and how long training runs."""

    mode: str  # full | quick | tiny
    n_train: int | None
    n_dev: int | None
    n_news: int | None
    epochs_long: int  # the '3 epochs' rows
    thorough: bool  # whether the Thorough preset runs

    def as_dict(self) -> dict:
        return asdict(self)


def sizes(mode: str) -> Sizes:
    if mode == "full":
        return Sizes("full", None, None, None, 3, True)
    if mode == "quick":  # under 3 minutes per command on 2 CPU cores
        return Sizes("quick", 256, 128, 400, 1, False)
    if mode == "tiny":  # seconds, with a tiny model: for tests of the command's shape only
        return Sizes("tiny", 32, 16, 24, 1, False)
    raise ValueError(mode)


def _subsample(rows: list[dict], n: int | None) -> list[dict]:
    """A stratified-by-chance, seeded subsample that keeps the file's order (so runs are comparable)."""
    if n is None or n >= len(rows):
        return rows
    keep = sorted(random.Random(SEED).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def _read_csv(path: Path, **kw):
    import pandas as pd

    if not path.is_file():
        raise UserError(
            f"The benchmark data file {path} is absent. Put the shared data folder beside the project "
            "(../shared/data) or point BELLWETHER_SHARED_DATA at it."
        )
    return pd.read_csv(path, **kw)


def fpb(split: str, n: int | None = None) -> list[dict]:
    """fpb rows as dicts with ``text`` and ``label`` (split: train | dev)."""
    frame = _read_csv(shared_dir() / "fpb" / f"{split}.csv", dtype=str, keep_default_na=False)
    rows = [{"text": t, "label": l} for t, l in zip(frame["text"], frame["label"])]
    return _subsample(rows, n)


def metrics(true: list[str], pred: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(true, pred)), 4),
        "macro_f1": round(float(f1_score(true, pred, labels=LABELS, average="macro", zero_division=0)), 4),
    }
