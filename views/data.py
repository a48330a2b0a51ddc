"""Data: upload a labelled file, check it, save it as a dataset version; browse and delete saved datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from engine import paths
from engine.data import datasets
from engine.data import generation
from engine.data import ingest
from engine.data import validate
from engine.errors import UserError
from views._shared import can, connect, current_user, md, plain_errors, plot_text, require_sign_in

NONE = "(none)"
ACTION_WORDS = {"dropped": "Will be dropped", "merged": "Will be merged", "kept": "Kept",
                "confirm": "Needs your choice"}

require_sign_in()
conn = connect()
state = st.session_state
state.setdefault("upload_round", 0)

st.title("Data")
if state.get("flash"):
    st.success(state.pop("flash"), icon=":material/check_circle:")  # composed below, names escaped


# Reading and checking a file are cached on their inputs: typing a dataset name or clicking in the saved datasets
# reruns the page, and checking a large file (every text through the tokenizer) takes seconds.
@st.cache_data(max_entries=4, show_spinner=False)
def read_upload(data: bytes, file_name: str, fmt: str, enc: str, sheet: str | None) -> ingest.Candidate:
    return ingest.read_file_guarded(data, file_name, fmt, enc, sheet)


@st.cache_data(max_entries=4, show_spinner=False)
def check_upload(data: bytes, file_name: str, fmt: str, enc: str, sheet: str | None, mapping: dict, ratios: tuple,
                 seed: int, task: str | None = None):
    return datasets.build(read_upload(data, file_name, fmt, enc, sheet), mapping, ratios=ratios, seed=seed, task=task)


@st.cache_data(max_entries=4, show_spinner=False)
def dataset_rows(_conn, home: str, dataset_id: int, created_at: str) -> pd.DataFrame:
    """A saved version's rows (never changed once saved; created_at tells a new version from a deleted one's id, the
    data directory one store's dataset 1 from another's)."""
    return pd.DataFrame(datasets.rows(_conn, dataset_id))


def reset_upload(message: str | None = None) -> None:
    state["upload_round"] += 1  # a new key empties the uploader and every picker below it
    if message:
        state["flash"] = message


# ---- upload --------------------------------------------------------------------------------------------------

uploaded = None
if can("dataset.import"):
    st.subheader("Upload labelled data")
    st.caption(
        "CSV (UTF-8, GB18030/GBK, Windows-1252: detected, or choose), Excel (.xlsx), JSON lines, or CoNLL for entity "
        "tagging (a token per line, the tag last, a blank line between sentences). Nothing is saved until you accept."
    )
    uploaded = st.file_uploader(
        "Labelled file",
        type=["csv", "tsv", "txt", "xlsx", "xlsm", "jsonl", "ndjson", "json", "conll", "bio", "iob"],
        key=f"upload_{state['upload_round']}",
    )
else:
    st.caption(f"You can read every dataset; saving one needs an analyst's role (yours: {current_user().role}).")

if uploaded is not None:
    data = uploaded.getvalue()
    key = f"{state['upload_round']}_{uploaded.file_id if hasattr(uploaded, 'file_id') else uploaded.name}"
    left, middle, right = st.columns(3)
    fmt = left.selectbox("Format", ingest.FORMAT_CHOICES, key=f"fmt_{key}", help="auto: from the file's name and content")
    enc = middle.selectbox("Encoding", ingest.ENCODING_CHOICES, key=f"enc_{key}", help="auto: detected from the bytes")
    sheet = state.get(f"sheet_{key}")
    prepared = candidate = None
    with plain_errors():
        candidate = read_upload(data, uploaded.name, fmt, enc, sheet)
    if candidate is not None:
        if candidate.format == "xlsx":
            right.selectbox("Sheet", candidate.sheets, index=candidate.sheets.index(candidate.sheet),
                            key=f"sheet_{key}", help="The sheet with the most rows is read first.")
        elif candidate.encoding:
            right.text_input("Encoding used", candidate.encoding, disabled=True, key=f"enc_used_{key}")

        mapping: dict = {}
        mkey = f"{key}_{candidate.format}_{candidate.sheet}"  # another sheet or format: guess the columns afresh
        task = None
        if candidate.task == "text-classification":
            gen_guess = generation.guess_columns(candidate)
            likely_generation = gen_guess["mode"] == "messages" or (
                gen_guess["mode"] == "prompt-response" and validate.guess_columns(candidate)["label"] in (
                    None, gen_guess["prompt"], gen_guess["response"]))
            purpose = st.radio(
                "What will this data train?", ["Classification (a text and its label)", "Generation (text to write)"],
                index=1 if likely_generation else 0, horizontal=True, key=f"purpose_{mkey}",
                help="Generation: a text column (the model learns to write such text), a prompt and a response column "
                     "(it learns to answer), or chat messages (JSON lines).")
            if purpose.startswith("Generation"):
                task = generation.TASK
        if task == generation.TASK:
            columns = candidate.columns
            options = [NONE] + columns
            modes = list(generation.MODES)
            mode = st.selectbox("Kind of data", modes, index=modes.index(gen_guess["mode"]), key=f"gmode_{mkey}",
                                format_func=lambda m: generation.MODE_WORDS[m])
            roles = {"text": ["text"], "prompt-response": ["prompt", "response"], "messages": ["messages"]}[mode]
            st.markdown("**Columns** (guessed from their names and contents; change them if they are wrong)")
            cells = st.columns(len(roles) + 1)
            mapping["mode"] = mode
            for cell, role in zip(cells, roles):
                guessed = gen_guess.get(role)
                mapping[role] = cell.selectbox(f"{role.capitalize()} column", options,
                                               index=options.index(guessed) if guessed in options else 0,
                                               key=f"g{role}_{mkey}")
            mapping["split"] = cells[-1].selectbox(
                "Split column (optional)", options, index=options.index(gen_guess["split"]) if gen_guess["split"] else 0,
                key=f"gsplit_{mkey}", help="A column holding train / validation / test. With none, Bellwether splits.",
            )
            mapping = {k: (None if v == NONE else v) for k, v in mapping.items()}
        elif candidate.task == "text-classification":
            guess = validate.guess_columns(candidate)
            columns = candidate.columns
            options = [NONE] + columns
            st.markdown("**Columns** (guessed from their names and contents; change them if they are wrong)")
            c1, c2, c3 = st.columns(3)
            mapping["text"] = c1.selectbox("Text column", options, index=options.index(guess["text"]) if guess["text"] else 0, key=f"text_{mkey}")
            mapping["label"] = c2.selectbox("Label column", options, index=options.index(guess["label"]) if guess["label"] else 0, key=f"label_{mkey}")
            mapping["split"] = c3.selectbox(
                "Split column (optional)", options, index=options.index(guess["split"]) if guess["split"] else 0,
                key=f"split_{mkey}", help="A column holding train / validation / test. With none, Bellwether splits.",
            )
            mapping = {k: (None if v == NONE else v) for k, v in mapping.items()}
        else:
            st.markdown(f"**Entity tagging** file: tags written in **{candidate.tag_scheme}**, stored as BIO.")

        ratios, seed = validate.DEFAULT_RATIOS, validate.DEFAULT_SEED
        if not mapping.get("split"):
            r1, r2, r3, r4 = st.columns(4)
            default_train, default_val, default_test = (round(r * 100) for r in validate.DEFAULT_RATIOS)
            train = r1.number_input("Train %", 1, 100, default_train, key=f"rtrain_{key}")
            val = r2.number_input("Validation %", 0, 99, default_val, key=f"rval_{key}")
            test = r3.number_input("Test %", 0, 99, default_test, key=f"rtest_{key}")
            seed = int(r4.number_input("Seed", 0, 2**31 - 1, validate.DEFAULT_SEED, key=f"seed_{key}"))
            ratios = (train, val, test)
        name = st.text_input(
            "Dataset name", Path(uploaded.name).stem, key=f"name_{key}",
            help="Saving under a name that exists makes a new version of it.",
        )
        with st.spinner("Checking the file..."):
            with plain_errors():
                prepared = check_upload(data, uploaded.name, fmt, enc, sheet, mapping, tuple(ratios), seed, task)

    if prepared is not None:
        report = prepared.report
        st.markdown("#### Validation report")
        unit = report.unit()
        m1, m2, m3 = st.columns(3)
        m1.metric(f"{unit.capitalize()} read", f"{report.n_input_rows:,}")
        m2.metric(f"{unit.capitalize()} to save", f"{report.n_rows:,}")
        m3.metric("Tags" if report.task == "token-classification" else "Labels", len(report.labels))
        st.markdown(f"**Split:** {md(report.split.get('description', ''))}")
        for note in report.notes:
            st.info(md(note), icon=":material/info:")
        if report.problems:
            st.markdown(f"**{len(report.problems)} problem(s) found.** Read what will happen to each, then accept or cancel.")
            for problem in report.problems:
                text = f"**{ACTION_WORDS.get(problem.action, problem.action)}.** {md(problem.message)}"
                if problem.examples:
                    text += "\n\n" + "\n".join(f"- {md(example)}" for example in problem.examples)
                (st.info if problem.action == "kept" else st.error if problem.action == "confirm" else st.warning)(text)
        else:
            st.success("No problems found.")
        if report.length:
            st.caption(md(report.length["description"]))
        table = pd.DataFrame(report.counts).fillna(0).astype(int).reindex(columns=list(validate.SPLITS), fill_value=0)
        table.index.name = {"token-classification": "tag", "generation": "rows"}.get(report.task, "label")
        st.dataframe(table, width="content")
        label_ok = False
        if report.needs_label_choice:
            label_ok = st.checkbox(
                f"Yes, '{md(report.mapping.get('label'))}' is the label column (I have looked at its values)",
                key=f"label_ok_{key}_{report.mapping.get('label')}",
                help="Otherwise choose the column that holds the label above. Accept stays off until you choose.")
        b1, b2, _gap = st.columns([1, 1, 4])
        if b1.button("Accept & save", type="primary", key=f"accept_{key}",
                     disabled=report.needs_label_choice and not label_ok):
            try:
                saved = datasets.save(conn, candidate, prepared, name, actor=current_user(), label_confirmed=label_ok)
            except UserError as exc:
                st.error(md(exc), icon=":material/error:")
            else:
                state["selected_dataset"] = saved["ref"]
                reset_upload(f"Saved dataset {md(saved['name'])} version {saved['version']} ({saved['n_rows']:,} {unit}).")
                st.rerun()
        if b2.button("Cancel", key=f"cancel_{key}"):
            reset_upload("Cancelled: nothing was saved.")
            st.rerun()

# ---- saved datasets ------------------------------------------------------------------------------------------

st.divider()
st.subheader("Saved datasets")
saved_all = datasets.list_datasets(conn)
if not saved_all:
    st.info("No dataset saved yet. Upload a labelled file above.")
    st.stop()

st.dataframe(
    pd.DataFrame([
        {"dataset": d["ref"], "task": d["task"], "rows": d["n_rows"], "labels": len(d["labels"]),
         "source file": d["source_file"], "created": d["created_at"], "by": d["created_by"]}
        for d in saved_all
    ]),
    hide_index=True,
    width="stretch",
)
refs = [d["ref"] for d in saved_all]
if state.get("selected_dataset") in refs:  # just saved: show it
    state["show_dataset"] = state.pop("selected_dataset")
if state.get("show_dataset") not in refs:
    state.pop("show_dataset", None)
ref = st.selectbox("Show dataset", refs, key="show_dataset")
with plain_errors():
    dataset = next(d for d in saved_all if d["ref"] == ref)
    rows = dataset_rows(conn, str(paths.home()), dataset["id"], dataset["created_at"])
    tagging = dataset["task"] == "token-classification"
    st.markdown(
        f"**{md(dataset['ref'])}** — {dataset['task']}, {dataset['n_rows']:,} {'sentences' if tagging else 'rows'}, "
        f"from {md(dataset['source_file'])} (sha256 `{(dataset['source_sha256'] or '')[:12]}…`), "
        f"saved {dataset['created_at']} by {md(dataset['created_by'])}."
    )
    preview, distribution, lengths = st.tabs(["Preview", "Label distribution", "Text length"])
    with preview:
        split = st.selectbox("Split", ["all", *validate.SPLITS], key="preview_split")
        shown = rows if split == "all" else rows[rows["split"] == split]
        columns = ["row_id", "split", "text", "tags"] if tagging else ["row_id", "split", "text", "label"]
        frame = shown[columns].head(500).copy()
        if tagging:
            frame["tags"] = frame["tags"].map(lambda tags: " ".join(tags))
        st.dataframe(frame, hide_index=True, width="stretch")
        st.caption(f"The first {len(frame):,} of {len(shown):,} rows.")
    with distribution:
        counts = [
            {"split": s, "label": plot_text(label), "count": n}
            for s, by_label in dataset["counts"].items()
            for label, n in by_label.items()
            if not (tagging and label == "O")
        ]
        if counts:
            chart = px.bar(
                pd.DataFrame(counts), x="label", y="count", color="split", barmode="group",
                category_orders={"split": list(validate.SPLITS)},
                title="Tags per split (tokens, O left out)" if tagging else "Labels per split",
            )
            st.plotly_chart(chart, width="stretch")
    with lengths:
        rows["length"] = rows["tokens"].map(len) if tagging else rows["text"].str.len()
        chart = px.histogram(
            rows, x="length", color="split", nbins=50, category_orders={"split": list(validate.SPLITS)},
            labels={"length": "tokens per sentence" if tagging else "characters per text"},
            title="Text length",
        )
        st.plotly_chart(chart, width="stretch")

    if not can("dataset.delete", owner=dataset.get("created_by")):
        st.stop()
    st.markdown("#### Delete")
    if state.get("confirm_delete") == ref:
        st.warning(f"Delete dataset {md(ref)} and its copy of the source file? This cannot be undone.")
        d1, d2, _gap = st.columns([1, 1, 4])
        if d1.button("Yes, delete", type="primary", key="delete_yes"):
            try:
                datasets.delete(conn, ref, confirm=True, actor=current_user())
            except UserError as exc:
                state.pop("confirm_delete", None)
                st.error(md(exc), icon=":material/error:")
            else:
                state.pop("confirm_delete", None)
                state.pop("selected_dataset", None)
                state["flash"] = f"Deleted dataset {md(ref)}."
                st.rerun()
        if d2.button("Keep it", key="delete_no"):
            state.pop("confirm_delete", None)
            st.rerun()
    elif st.button(f"Delete {md(ref)}…", key="delete"):
        state["confirm_delete"] = ref
        st.rerun()
