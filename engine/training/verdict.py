"""Did a finished run go wrong? Plain-words warnings from its predictions.

A run can end "succeeded" with a model that learnt nothing useful: it predicts the majority class for everything
(macro-F1 about what always answering the commonest label gives), or one class almost never. :func:`check` finds
that from true and predicted labels; :func:`train` records its sentences in ``metrics["warnings"]`` at the end of
training, and :func:`for_run` computes them on read for runs trained before the check existed.

The thresholds (why these):
- *near a baseline*: macro-F1 within ``NEAR`` (0.05) of the better of two no-skill answers: always the majority
  class (its F1 is 2p/(1+p), the others 0, averaged over the classes) or a draw by the class shares (each class's
  expected F1 equals its share, so the macro average is 1/K).
- *a class almost never predicted*: a class with at least ``MIN_SUPPORT`` true rows that is predicted for under a
  quarter of its true share, or whose recall is under 0.1.
"""

from __future__ import annotations

from collections import Counter

from engine.data.wording import said, shown
from engine.i18n import N_

NEAR = 0.05
MIN_SUPPORT = 5
SHARE_FRACTION = 0.25
MIN_RECALL = 0.1
ADVICE = N_("Try another seed (Run again), the Balanced or Thorough preset, or more epochs; if the classes are very "
            "uneven, turn on class weighting.")
BASELINE_WORDS = {"majority": N_("always answering the commonest label"), "prior": N_("guessing by the label shares")}


def _with_advice(out: list) -> list:
    """What to do, once, after the last problem."""
    if out:
        out[-1] = said(N_("{w} {a}"), w=out[-1], a=said(ADVICE))  # the warning, then the advice
    return out


def baselines(true: list[str]) -> dict:
    """The macro-F1 of the two no-skill answers for these true labels: always the majority class, or the class
    shares drawn at random (expected value)."""
    counts = Counter(true)
    n, k = len(true), max(1, len(counts))
    if not n:
        return {"majority": 0.0, "prior": 0.0}
    p = max(counts.values()) / n
    return {"majority": (2 * p / (1 + p)) / k, "prior": 1 / k}


def check(true: list[str], pred: list[str], split: str = "test", said_form: bool = False) -> list:
    """Warnings (plain sentences, the last ending with what to do) for a text classifier's predictions; [] when
    none. In the reader's language; ``said_form``: as said sentences (engine.data.wording), to keep and show later."""
    out = _check(true, pred, split)
    return out if said_form else [shown(w) for w in out]


def _check(true: list[str], pred: list[str], split: str) -> list[dict]:
    from sklearn.metrics import f1_score

    pairs = [(t, p) for t, p in zip(true, pred) if t is not None and p is not None]
    if len(pairs) < 2:
        return []
    true = [t for t, _skip in pairs]
    pred = [p for _skip, p in pairs]
    classes = sorted(set(true))
    if len(classes) < 2:
        return []
    n = len(true)
    true_counts, pred_counts = Counter(true), Counter(pred)
    macro = float(f1_score(true, pred, labels=classes, average="macro", zero_division=0))
    base = baselines(true)
    out = []
    best_base, which = max((base["majority"], "majority"), (base["prior"], "prior"))
    if macro <= best_base + NEAR:
        majority = true_counts.most_common(1)[0][0]
        out.append(said(
            N_("This run learnt little: its {split} macro-F1 ({macro}) is about what {which} gives "
               "({baseline}; the commonest label is '{majority}')."),
            split=_split_said(split), macro=f"{macro:.2f}", which=said(BASELINE_WORDS[which]),
            baseline=f"{best_base:.2f}", majority=majority))
    rare = []
    for c in classes:
        support = true_counts[c]
        if support < MIN_SUPPORT:
            continue
        hit = sum(1 for t, p in pairs if t == c and p == c)
        recall = hit / support
        if pred_counts[c] / n < SHARE_FRACTION * support / n or recall < MIN_RECALL:
            rare.append(said(N_("'{label}' (predicted {n} times for {support} true, recall {recall})"), label=c,
                             n=pred_counts[c], support=support, recall=f"{recall:.2f}"))
    if rare:
        names = {f"c{i}": r for i, r in enumerate(rare)}
        out.append(said(
            N_("This model almost never predicts {classes} on the {split} split, so it misses those cases."),
            classes=said(", ".join("{" + k + "}" for k in names), **names), split=_split_said(split)))
    return _with_advice(out)


def _split_said(split: str):
    return said({"test": N_("test"), "validation": N_("validation"), "train": N_("train")}[split]) \
        if split in ("test", "validation", "train") else split


def check_tags(true_tags: list[list[str]], pred_tags: list[list[str]], split: str = "test",
               said_form: bool = False) -> list:
    """Warnings for an entity tagger: it tags (almost) no entities although the data has them."""
    out = _check_tags(true_tags, pred_tags, split)
    return out if said_form else [shown(w) for w in out]


def _check_tags(true_tags: list[list[str]], pred_tags: list[list[str]], split: str) -> list[dict]:
    flat_t = [t for row in true_tags for t in row]
    flat_p = [p for row in pred_tags for p in row]
    true_ent = sum(1 for t in flat_t if t != "O")
    pred_ent = sum(1 for p in flat_p if p != "O")
    if true_ent >= MIN_SUPPORT and pred_ent < SHARE_FRACTION * true_ent:
        return _with_advice([said(
            N_("This tagger almost never marks an entity on the {split} split ({predicted} entity tokens predicted "
               "for {true} true): it learnt to answer 'O'."), split=_split_said(split), predicted=pred_ent,
            true=true_ent)])
    return []


def from_prediction_rows(rows: list[dict], task: str, split: str = "test", said_form: bool = False) -> list:
    """:func:`check` or :func:`check_tags` over rows of the ``predictions`` table (or rows shaped like them)."""
    import json

    if task == "token-classification":
        def tags(value):
            return json.loads(value) if isinstance(value, str) else (value or [])

        return check_tags([tags(r.get("true_tags_json")) for r in rows],
                          [tags(r.get("pred_tags_json")) for r in rows], split, said_form)
    return check([r.get("true_label") for r in rows], [r.get("pred_label") for r in rows], split, said_form)


def for_run(conn, run: dict) -> list[str]:
    """A finished run's warnings: those recorded at the end of training, else computed now from its stored test
    predictions (runs trained before the check existed). [] for runs that have not succeeded."""
    if run.get("status") != "succeeded":
        return []
    metrics = run.get("metrics")
    if metrics is None:
        import json

        metrics = json.loads(run.get("metrics_json") or "{}")
    if isinstance(metrics.get("warnings_said"), list):  # kept as said sentences: in the reader's language
        return [shown(w) for w in metrics["warnings_said"]]
    if isinstance(metrics.get("warnings"), list):  # runs trained before warnings were kept as said sentences
        return list(metrics["warnings"])
    rows = list(conn.query(
        "SELECT true_label, pred_label, true_tags_json, pred_tags_json FROM predictions "
        "WHERE run_id = ? AND split = 'test'", [run["id"]]))
    return from_prediction_rows(rows, run.get("task") or "text-classification")
