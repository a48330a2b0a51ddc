"""Train: pick a dataset, a base model and a preset (or advanced options), then queue a fine-tuning run."""

from __future__ import annotations

import streamlit as st

from engine.jobs import overview
from engine.jobs import queue
from engine import settings
from engine.data import language as languages
from engine.models import catalog
from engine.models import labels as label_words
from engine.models.pooling import CHOICES as pooling_choices
from engine.training import finetune
from engine.errors import UserError
from engine.i18n import N_, _, number, percent
from views._shared import can, connect, current_user, md, plain_errors, require_sign_in, start_worker

require_sign_in()
if not can("train.submit"):  # viewers have no Train page in the navigation; a direct run of this file says why
    st.title(_("Train a model"))
    st.info(_("Starting training runs needs an analyst's role (yours: {role}).", role=_(current_user().role)))
    st.stop()
conn = connect()
state = st.session_state
DATA_PAGE, RUNS_PAGE = "views/data.py", "views/runs.py"  # page files (not words)
PRESET_NAMES = {"quick": N_("Quick"), "balanced": N_("Balanced"), "thorough": N_("Thorough")}  # shown with _()
POOLING_WORDS = {"auto": N_("auto (the way the base model was trained)"), "cls": N_("the first token ([CLS])"),
                 "mean": N_("the mean of all tokens")}
ADVANCED = ["epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio", "weight_decay",
            "gradient_accumulation", "seed", "eval_steps", "early_stopping_patience", "layer_decay", "average_last",
            "label_smoothing", "r_drop", "soup"]
LORA = ["lora_r", "lora_alpha", "lora_dropout"]

st.title(_("Train a model"))

choices = finetune.dataset_choices(conn)
if not choices:
    st.info(_("There is no dataset yet. Import a labelled file on the Data page first."), icon=":material/info:")
    st.page_link(DATA_PAGE, label=_("Go to Data"), icon=":material/table_view:")
    st.stop()


def chosen_task() -> str:
    ref = state.get("train_dataset")
    return next((d["task"] for d in choices if d["ref"] == ref), choices[0]["task"])


def language_names(codes) -> str:
    return _("about 100 languages") if catalog.MULTILINGUAL in codes else ", ".join(languages.name(c) for c in codes)


def fill_advanced() -> None:
    """Put the chosen preset's values, for the chosen dataset's task, into the Advanced fields."""
    state["adv_task"] = chosen_task()
    config = finetune.preset_config(state.get("train_preset", "balanced"), state["adv_task"])
    for key in ADVANCED + LORA:
        state[f"adv_{key}"] = config[key]
    state["adv_lora_target_modules"] = config["lora_target_modules"]
    state.setdefault("adv_class_weighting", False)
    state.setdefault("adv_lora", False)
    state.setdefault("adv_full_determinism", False)
    state.setdefault("adv_precision", "auto")
    state.setdefault("adv_packing", False)
    state.setdefault("adv_pooling", "auto")
    state["adv_freeze_embeddings"] = bool(config["freeze_embeddings"])
    state.pop("train_errors", None)


if "adv_epochs" not in state:
    state.setdefault("train_preset", "balanced")
    fill_advanced()


def overrides() -> dict:
    values = {key: state.get(f"adv_{key}") for key in ADVANCED + LORA}
    values["class_weighting"] = bool(state.get("adv_class_weighting"))
    values["lora"] = bool(state.get("adv_lora"))
    values["full_determinism"] = bool(state.get("adv_full_determinism"))
    values["precision"] = state.get("adv_precision") or "auto"
    values["lora_target_modules"] = state.get("adv_lora_target_modules") or ""
    if chosen_task() == "generation":
        values["packing"] = bool(state.get("adv_packing"))
        values.pop("soup")  # a generation run trains one model
    if chosen_task() == "text-classification":
        values["pooling"] = state.get("adv_pooling") or "auto"
        values["freeze_embeddings"] = bool(state.get("adv_freeze_embeddings"))
    return values


# The Train button's click is handled before the fields are drawn, so that each error shows next to its field.
if state.pop("train_clicked", False):
    state.pop("train_duplicate", None)
    try:
        run_id = finetune.submit(
            conn,
            state["train_dataset"],
            base_model=state.get("train_base_model") or "default",
            preset=state.get("train_preset"),
            overrides=overrides(),
            actor=current_user(),
            allow_list=True,  # the dashboard offers only the base models an administrator allowed
            purpose=state.get(f"train_purpose_{state['train_dataset']}"),
            again=state.pop("train_again", False),
        )
    except finetune.ConfigError as exc:
        state["train_errors"] = exc.errors
    except finetune.DuplicateRun as exc:
        state.pop("train_errors", None)
        state.pop("train_flash", None)
        state["train_duplicate"] = exc.run_ids
    else:
        state.pop("train_errors", None)
        state["train_flash"] = run_id
        state["train_worker_note"] = start_worker()
errors: dict[str, str] = state.get("train_errors") or {}


def field_error(key: str) -> None:
    if key in errors:
        st.error(errors[key], icon=":material/error:")


if state.get("train_flash"):
    run_id = state["train_flash"]
    if note := state.get("train_worker_note"):
        st.warning(_("Run {run_id} is queued.{note}", run_id=run_id, note=note), icon=":material/warning:")
    else:
        st.success(_("Run {run_id} is queued. It trains in the background; you may close this page.", run_id=run_id),
                   icon=":material/check_circle:")
    st.page_link(RUNS_PAGE, label=_("Follow run {run_id} on the Runs page", run_id=run_id),
                 icon=":material/monitoring:",
                 query_params={"run": str(run_id)})
if errors:
    st.error(_("Nothing was queued: fix the fields marked below."), icon=":material/error:")
if duplicate := state.get("train_duplicate"):
    which = ", ".join(f"#{i}" for i in duplicate)
    st.warning(_("Run {which} already trains this dataset with the same base model and settings and has not "
                 "finished. Training it again gives the same model. Queue another run anyway?", which=which),
               icon=":material/content_copy:")
    y, n, _gap = st.columns([1, 1, 3])
    y.button(_("Yes, train again"), key="train_again_btn",
             on_click=lambda: state.update(train_clicked=True, train_again=True))
    n.button(_("No, keep one"), key="train_keep_one", on_click=lambda: state.pop("train_duplicate", None))
    for run_id in duplicate:
        st.page_link(RUNS_PAGE, label=_("Follow run {run_id} on the Runs page", run_id=run_id),
                     icon=":material/monitoring:", query_params={"run": str(run_id)})

# ---- what to train on -----------------------------------------------------------------------------------------

TASK_WORDS = {"text-classification": N_("text-classification"), "token-classification": N_("token-classification"),
              "generation": N_("generation")}
labels = {d["ref"]: _("{name} v{version} · {task} · {n} rows", name=d["name"], version=d["version"],
                      task=_(TASK_WORDS[d["task"]]) if d["task"] in TASK_WORDS else d["task"],
                      n=number(d.get("n_rows") or 0)) for d in choices}
st.selectbox(_("Dataset"), list(labels), format_func=labels.get, key="train_dataset")
field_error("dataset")
field_error("task")
dataset = next(d for d in choices if d["ref"] == state["train_dataset"])
if state.get("adv_task") != dataset["task"]:  # another task has its own presets (generation: docs/benchmarks.md)
    fill_advanced()
n_train = finetune.split_counts(conn, dataset["id"]).get("train") or dataset.get("n_rows") or 0  # rows, not tags
if dataset["task"] == "text-classification":
    guessed = label_words.guess_purpose(dataset.get("labels") or [], dataset["task"])
    purposes = list(label_words.PURPOSES)
    st.radio(_("What is this model for?"), purposes, index=purposes.index(guessed), horizontal=True,
             format_func=lambda p: _(label_words.PURPOSE_WORDS[p]), key=f"train_purpose_{dataset['ref']}",
             help=_("Sentiment models score news on the Feeds and Monitor pages; only a model trained for topics can "
                    "tag a feed's topics. Guessed from the dataset's labels: change it if it is wrong."))
    field_error("purpose")

st.text_input(
    _("Base model"),
    value="default",
    key="train_base_model",
    help=_("'default' is the packaged all-MiniLM-L6-v2 (works offline). Or a local model folder, or a Hugging Face "
           "hub id such as ProsusAI/finbert (needs the internet)."),
)
field_error("base_model")
base_spec = (state.get("train_base_model") or "default").strip()
if not catalog.is_allowed(base_spec):  # estimates must not tell an existing server folder from a missing one
    base_spec = "default"
if warning := finetune.language_warning(conn, dataset["ref"], base_spec):
    st.warning(md(warning), icon=":material/translate:")
with st.expander(_("Base models by language and purpose")):
    st.dataframe(
        [{_("Model"): s.id, _("Languages"): language_names(s.languages), _("Suits"): _(s.purpose),
          _("About"): _(s.about), _("Allowed here"): _("yes") if catalog.is_allowed(s.id) else _("no")}
         for s in catalog.SUGGESTIONS],
        hide_index=True, width="stretch")
    if settings.allow_downloads():
        st.caption(_("This server downloads an allowed hub model the first time it is used. An administrator allows "
                     "one with: python -m engine models allow NAME"))
    else:
        st.caption(_("This server cannot download models: an administrator must allow downloads, or put the model "
                     "folder on the server, and allow it (python -m engine models allow NAME). Until then, 'default' "
                     "is the model you can use."))

# ---- presets --------------------------------------------------------------------------------------------------

st.subheader(_("How thoroughly"))
slot = queue.default_slot()
speed = finetune.base_speed(conn, base_spec, slot)  # once for the three cards and the custom settings
columns = st.columns(3)
for column, (key, title) in zip(columns, PRESET_NAMES.items()):
    config = finetune.preset_config(key, dataset["task"])
    seconds = finetune.estimate_range(conn, n_train, config, base_spec, slot, speed=speed, task=dataset["task"])
    with column.container(border=True):
        st.markdown(f"**{_(title)}**")
        st.caption(finetune.preset_text(key, dataset["task"]))
        epochs = (_("1 epoch") if config["epochs"] == 1 else _("{n} epochs", n=f"{config['epochs']:g}"))
        settings_line = _("{epochs} · learning rate {rate} · batch {batch} · max length {length}", epochs=epochs,
                          rate=f"{config['learning_rate']:g}", batch=config["batch_size"],
                          length=config["max_length"])
        if config["early_stopping_patience"]:
            settings_line += " · " + _("early stop after {n}", n=config["early_stopping_patience"])
        if config["layer_decay"] < 1:
            settings_line += " · " + _("layer-wise rate decay {decay}", decay=f"{config['layer_decay']:g}")
        if config["average_last"]:
            settings_line += " · " + _("weights averaged over the last {share}", share=percent(config["average_last"]))
        if config.get("r_drop"):
            settings_line += " · " + _("R-Drop {alpha}", alpha=f"{config['r_drop']:g}")
        if config.get("soup", 1) > 1:
            settings_line += " · " + _("{n} runs averaged into one model", n=config["soup"])
        st.markdown(settings_line)
        st.markdown(_("Estimated time on this machine ({slot}): **{duration}**", slot=slot.upper(),
                      duration=overview.duration_words(*seconds)),
                    help=_("A range: from the speed earlier runs of this base model measured here (their spread, as "
                           "the machine was more or less busy), or a wide guess before the first run."))
st.radio(_("Preset"), list(PRESET_NAMES), format_func=lambda p: _(PRESET_NAMES[p]), key="train_preset",
         horizontal=True, on_change=fill_advanced)
field_error("preset")

# ---- advanced -------------------------------------------------------------------------------------------------

with st.expander(_("Advanced options"), expanded=bool(errors)):
    st.caption(_("Filled in from the preset; change any of them. Invalid values are refused with the reason."))
    left, right = st.columns(2)
    fields = {
        "epochs": (left, N_("Epochs"), 1.0, "%g"),
        "learning_rate": (left, N_("Learning rate"), 1e-5, "%.6f"),
        "batch_size": (left, N_("Batch size"), 1, None),
        "max_length": (left, N_("Max length (tokens)"), 16, None),
        "gradient_accumulation": (left, N_("Gradient accumulation"), 1, None),
        "warmup_ratio": (right, N_("Warm-up ratio"), 0.05, "%.2f"),
        "weight_decay": (right, N_("Weight decay"), 0.01, "%.3f"),
        "seed": (right, N_("Seed"), 1, None),
        "eval_steps": (right, N_("Evaluate every N steps (0: each epoch)"), 50, None),
        "early_stopping_patience": (right, N_("Early-stopping patience (0: off)"), 1, None),
        "layer_decay": (left, N_("Layer-wise learning-rate decay (1: off)"), 0.05, "%.2f"),
        "average_last": (right, N_("Average the weights over the last share of steps (0: off)"), 0.1, "%.2f"),
        "label_smoothing": (left, N_("Label smoothing (0: off)"), 0.05, "%.2f"),
        "r_drop": (right, N_("R-Drop: agreement between two dropout draws (0: off; steps take twice as long)"), 0.5,
                   "%.2f"),
        "soup": (left, N_("Model soup: runs from different seeds, their weights averaged (1: off; each run takes "
                          "the whole time again)"), 1, None),
    }
    if dataset["task"] == "generation":
        fields.pop("soup")
    for key, (column, label, step, fmt) in fields.items():
        with column:
            st.number_input(_(label), key=f"adv_{key}", step=step, format=fmt)
            field_error(key)
    st.selectbox(_("Precision"), list(finetune.PRECISIONS), key="adv_precision",
                 help=_("auto: bf16 (mixed precision) on a GPU that supports it, else fp16; on a CPU that computes "
                        "bfloat16 natively, bf16 too (the same quality over seeds), else fp32. There bf16 alone makes "
                        "a classification run about 1.3x as fast, more for larger models; with the cheaper dropout "
                        "masks and the frozen word embeddings (both on by default) a run takes about half the time "
                        "of fp32 training every weight. The saved model is float32 either way."))
    field_error("precision")
    if dataset["task"] == "text-classification":
        st.selectbox(_("Sentence reading"), list(pooling_choices), key="adv_pooling",
                     format_func=lambda choice: _(POOLING_WORDS[choice]),
                     help=_("How the classifier reads a sentence. auto reads the mean of all its words for a "
                            "sentence-transformers model (such as the default one, which was trained that way) and "
                            "the first token otherwise; the seed study in docs/benchmarks.md found the mean steadier."))
        field_error("pooling")
        st.checkbox(_("Leave the word embeddings as the base model has them (faster)"), key="adv_freeze_embeddings",
                    help=_("The table of word vectors, half of the default model's weights, is not trained: steps "
                           "run faster and over seeds the quality was the same (docs/benchmarks.md). Untick it to "
                           "train every weight."))
    if dataset["task"] == "generation":
        st.checkbox(_("Pack short examples into full-length blocks"), key="adv_packing",
                    help=_("Lays whole examples end to end up to the max length, so no step is spent on padding: "
                           "fewer steps for the same data when examples are short. Each example still sees only "
                           "itself and the prompt still carries no loss."))
    else:
        st.checkbox(_("Weight classes to balance rare labels"), key="adv_class_weighting")
    st.checkbox(
        _("Full determinism (identical re-runs on a GPU too)"),
        key="adv_full_determinism",
        help=_("The same seed, data and settings always give the same model on the CPU. On a GPU some calculations "
               "may come out slightly differently each time, so a re-run can differ a little; this option makes the "
               "GPU repeat itself exactly, at some cost in speed."),
    )
    st.checkbox(_("LoRA (train small adapters; merged into the saved model)"), key="adv_lora")
    if state.get("adv_lora"):
        a, b, c = st.columns(3)
        with a:
            st.number_input(_("LoRA r"), key="adv_lora_r", step=1)
            field_error("lora_r")
        with b:
            st.number_input(_("LoRA alpha"), key="adv_lora_alpha", step=1.0, format="%g")
            field_error("lora_alpha")
        with c:
            st.number_input(_("LoRA dropout"), key="adv_lora_dropout", step=0.05, format="%.2f")
            field_error("lora_dropout")
        st.text_input(_("LoRA target modules (comma-separated; empty: the model's default)"),
                      key="adv_lora_target_modules")
        field_error("lora_target_modules")

with plain_errors():
    try:
        estimate = finetune.estimate_range(conn, n_train, finetune.preset_config(state["train_preset"], dataset["task"],
                                                                                overrides()),
                                           base_spec, slot, speed=speed, task=dataset["task"])
        st.caption(_("With these settings: {duration} for {n} training rows.",
                     duration=overview.duration_words(*estimate), n=number(n_train)))
    except UserError:
        pass

st.button(_("Train"), type="primary", icon=":material/model_training:", on_click=lambda: state.update(train_clicked=True))
