"""Train: pick a dataset, a base model and a preset (or advanced options), then queue a fine-tuning run."""

from __future__ import annotations

import streamlit as st

from engine.jobs import overview
from engine.jobs import queue
from engine import settings
from engine.data import language as languages
from engine.models import catalog
from engine.models import labels as label_words
from engine.training import finetune
from engine.errors import UserError
from views._shared import can, connect, current_user, plain_errors, require_sign_in, start_worker

require_sign_in()
if not can("train.submit"):  # viewers have no Train page in the navigation; a direct run of this file says why
    st.title("Train a model")
    st.info(f"Starting training runs needs an analyst's role (yours: {current_user().role}).")
    st.stop()
conn = connect()
state = st.session_state
PRESET_NAMES = {"quick": "Quick", "balanced": "Balanced", "thorough": "Thorough"}
ADVANCED = ["epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio", "weight_decay",
            "gradient_accumulation", "seed", "eval_steps", "early_stopping_patience"]
LORA = ["lora_r", "lora_alpha", "lora_dropout"]

st.title("Train a model")

choices = finetune.dataset_choices(conn)
if not choices:
    st.info("There is no dataset yet. Import a labelled file on the Data page first.", icon=":material/info:")
    st.page_link("views/data.py", label="Go to Data", icon=":material/table_view:")
    st.stop()


def chosen_task() -> str:
    ref = state.get("train_dataset")
    return next((d["task"] for d in choices if d["ref"] == ref), choices[0]["task"])


def language_names(codes) -> str:
    return "about 100 languages" if catalog.MULTILINGUAL in codes else ", ".join(languages.name(c) for c in codes)


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
        st.warning(f"Run {run_id} is queued.{note}", icon=":material/warning:")
    else:
        st.success(f"Run {run_id} is queued. It trains in the background; you may close this page.",
                   icon=":material/check_circle:")
    st.page_link("views/runs.py", label=f"Follow run {run_id} on the Runs page", icon=":material/monitoring:",
                 query_params={"run": str(run_id)})
if errors:
    st.error("Nothing was queued: fix the fields marked below.", icon=":material/error:")
if duplicate := state.get("train_duplicate"):
    which = ", ".join(f"#{i}" for i in duplicate)
    st.warning(f"Run {which} already trains this dataset with the same base model and settings and has not finished. "
               "Training it again gives the same model. Queue another run anyway?", icon=":material/content_copy:")
    y, n, _gap = st.columns([1, 1, 3])
    y.button("Yes, train again", key="train_again_btn",
             on_click=lambda: state.update(train_clicked=True, train_again=True))
    n.button("No, keep one", key="train_keep_one", on_click=lambda: state.pop("train_duplicate", None))
    for run_id in duplicate:
        st.page_link("views/runs.py", label=f"Follow run {run_id} on the Runs page", icon=":material/monitoring:",
                     query_params={"run": str(run_id)})

# ---- what to train on -----------------------------------------------------------------------------------------

labels = {d["ref"]: f"{d['name']} v{d['version']} · {d['task']} · {d.get('n_rows') or 0:,} rows" for d in choices}
st.selectbox("Dataset", list(labels), format_func=labels.get, key="train_dataset")
field_error("dataset")
field_error("task")
dataset = next(d for d in choices if d["ref"] == state["train_dataset"])
if state.get("adv_task") != dataset["task"]:  # another task has its own presets (generation: docs/benchmarks.md)
    fill_advanced()
n_train = finetune.split_counts(conn, dataset["id"]).get("train") or dataset.get("n_rows") or 0  # rows, not tags
if dataset["task"] == "text-classification":
    guessed = label_words.guess_purpose(dataset.get("labels") or [], dataset["task"])
    purposes = list(label_words.PURPOSES)
    st.radio("What is this model for?", purposes, index=purposes.index(guessed), horizontal=True,
             format_func=label_words.PURPOSE_WORDS.get, key=f"train_purpose_{dataset['ref']}",
             help="Sentiment models score news on the Feeds and Monitor pages; only a model trained for topics can tag "
                  "a feed's topics. Guessed from the dataset's labels: change it if it is wrong.")
    field_error("purpose")

st.text_input(
    "Base model",
    value="default",
    key="train_base_model",
    help="'default' is the packaged all-MiniLM-L6-v2 (works offline). Or a local model folder, or a Hugging Face "
    "hub id such as ProsusAI/finbert (needs the internet).",
)
field_error("base_model")
base_spec = (state.get("train_base_model") or "default").strip()
if not catalog.is_allowed(base_spec):  # estimates must not tell an existing server folder from a missing one
    base_spec = "default"
if warning := finetune.language_warning(conn, dataset["ref"], base_spec):
    st.warning(warning, icon=":material/translate:")
with st.expander("Base models by language and purpose"):
    st.dataframe(
        [{"Model": s.id, "Languages": language_names(s.languages), "Suits": s.purpose, "About": s.about,
          "Allowed here": "yes" if catalog.is_allowed(s.id) else "no"} for s in catalog.SUGGESTIONS],
        hide_index=True, width="stretch")
    if settings.allow_downloads():
        st.caption("This server downloads an allowed hub model the first time it is used. An administrator allows "
                   "one with: python -m engine models allow NAME")
    else:
        st.caption("This server cannot download models: an administrator must allow downloads, or put the model "
                   "folder on the server, and allow it (python -m engine models allow NAME). Until then, 'default' "
                   "is the model you can use.")

# ---- presets --------------------------------------------------------------------------------------------------

st.subheader("How thoroughly")
slot = queue.default_slot()
speed = finetune.base_speed(conn, base_spec, slot)  # once for the three cards and the custom settings
columns = st.columns(3)
for column, (key, title) in zip(columns, PRESET_NAMES.items()):
    config = finetune.preset_config(key, dataset["task"])
    seconds = finetune.estimate_range(conn, n_train, config, base_spec, slot, speed=speed)
    with column.container(border=True):
        st.markdown(f"**{title}**")
        st.caption(finetune.preset_text(key, dataset["task"]))
        st.markdown(
            f"{config['epochs']:g} epoch{'s' if config['epochs'] != 1 else ''} · learning rate {config['learning_rate']:g}"
            f" · batch {config['batch_size']} · max length {config['max_length']}"
            + (f" · early stop after {config['early_stopping_patience']}" if config["early_stopping_patience"] else "")
        )
        st.markdown(f"Estimated time on this machine ({slot.upper()}): **{overview.duration_words(*seconds)}**",
                    help="A range: from the speed earlier runs of this base model measured here (their spread, as "
                         "the machine was more or less busy), or a wide guess before the first run.")
st.radio("Preset", list(PRESET_NAMES), format_func=PRESET_NAMES.get, key="train_preset", horizontal=True,
         on_change=fill_advanced)
field_error("preset")

# ---- advanced -------------------------------------------------------------------------------------------------

with st.expander("Advanced options", expanded=bool(errors)):
    st.caption("Filled in from the preset; change any of them. Invalid values are refused with the reason.")
    left, right = st.columns(2)
    fields = {
        "epochs": (left, "Epochs", 1.0, "%g"),
        "learning_rate": (left, "Learning rate", 1e-5, "%.6f"),
        "batch_size": (left, "Batch size", 1, None),
        "max_length": (left, "Max length (tokens)", 16, None),
        "gradient_accumulation": (left, "Gradient accumulation", 1, None),
        "warmup_ratio": (right, "Warm-up ratio", 0.05, "%.2f"),
        "weight_decay": (right, "Weight decay", 0.01, "%.3f"),
        "seed": (right, "Seed", 1, None),
        "eval_steps": (right, "Evaluate every N steps (0: each epoch)", 50, None),
        "early_stopping_patience": (right, "Early-stopping patience (0: off)", 1, None),
    }
    for key, (column, label, step, fmt) in fields.items():
        with column:
            st.number_input(label, key=f"adv_{key}", step=step, format=fmt)
            field_error(key)
    st.selectbox("Precision", list(finetune.PRECISIONS), key="adv_precision",
                 help="auto: bf16 (mixed precision) on a GPU or on a CPU that computes bfloat16 natively, otherwise "
                 "fp32. fp32 is the exact, slower choice; the saved model is float32 either way.")
    field_error("precision")
    if dataset["task"] == "generation":
        st.checkbox("Pack short examples into full-length blocks", key="adv_packing",
                    help="Lays whole examples end to end up to the max length, so no step is spent on padding: fewer "
                    "steps for the same data when examples are short. Each example still sees only itself and the "
                    "prompt still carries no loss.")
    else:
        st.checkbox("Weight classes to balance rare labels", key="adv_class_weighting")
    st.checkbox(
        "Full determinism (identical re-runs on a GPU too)",
        key="adv_full_determinism",
        help="The same seed, data and settings always give the same model on the CPU. On a GPU some calculations "
        "may come out slightly differently each time, so a re-run can differ a little; this option makes the GPU "
        "repeat itself exactly, at some cost in speed.",
    )
    st.checkbox("LoRA (train small adapters; merged into the saved model)", key="adv_lora")
    if state.get("adv_lora"):
        a, b, c = st.columns(3)
        with a:
            st.number_input("LoRA r", key="adv_lora_r", step=1)
            field_error("lora_r")
        with b:
            st.number_input("LoRA alpha", key="adv_lora_alpha", step=1.0, format="%g")
            field_error("lora_alpha")
        with c:
            st.number_input("LoRA dropout", key="adv_lora_dropout", step=0.05, format="%.2f")
            field_error("lora_dropout")
        st.text_input("LoRA target modules (comma-separated; empty: the model's default)", key="adv_lora_target_modules")
        field_error("lora_target_modules")

with plain_errors():
    try:
        estimate = finetune.estimate_range(conn, n_train, finetune.preset_config(state["train_preset"], dataset["task"],
                                                                                overrides()),
                                           base_spec, slot, speed=speed)
        st.caption(f"With these settings: {overview.duration_words(*estimate)} for {n_train:,} training rows.")
    except UserError:
        pass

st.button("Train", type="primary", icon=":material/model_training:", on_click=lambda: state.update(train_clicked=True))
