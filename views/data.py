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
from engine.i18n import N_, _, number
from views._shared import can, chart_style, connect, current_user, md, plain_errors, plot_text, require_sign_in

NONE = "(none)"  # the "no column" choice (shown translated by format_func)
PURPOSES = {"classification": N_("Classification (a text and its label)"),
            "generation": N_("Generation (text to write)")}


def column_words(option: str) -> str:
    return _("(none)") if option == NONE else option


def unit_words(unit: str, n: int) -> str:
    """'1,234 rows' / '1,234 sentences' in the reader's language."""
    return (_("{n} sentences", n=number(n)) if unit == "sentences" else _("{n} rows", n=number(n)))


ROLE_LABELS = {"text": lambda: _("Text column"), "prompt": lambda: _("Prompt column"),
               "response": lambda: _("Response column"), "messages": lambda: _("Messages column")}
TASK_WORDS = {"text-classification": lambda: _("text-classification"),
              "token-classification": lambda: _("token-classification"), "generation": lambda: _("generation")}


def task_words(task: str) -> str:
    return TASK_WORDS[task]() if task in TASK_WORDS else task


def refusal(exc: UserError) -> None:
    """An upload that cannot be read (a PDF, an empty file ...): said inline, in plain words, with what to do."""
    st.error(md(exc), icon=":material/error:")

require_sign_in()
conn = connect()
state = st.session_state
state.setdefault("upload_round", 0)

st.title(_("Data"))
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
    st.subheader(_("Upload labelled data"))
    st.caption(_(
        "CSV (UTF-8, GB18030/GBK, Windows-1252: detected, or choose), Excel (.xlsx), JSON lines, or CoNLL for entity "
        "tagging (a token per line, the tag last, a blank line between sentences). Nothing is saved until you accept."
    ))
    # No type= list: Streamlit would refuse another file with a tooltip only. Any file is taken, and the engine says
    # in plain words what it is and what to do (a PDF: export the table as CSV ...).
    uploaded = st.file_uploader(_("Labelled file"), key=f"upload_{state['upload_round']}")
else:
    st.caption(_("You can read every dataset; saving one needs an analyst's role (yours: {role}).",
                 role=_(current_user().role)))

if uploaded is not None:
    data = uploaded.getvalue()
    key = f"{state['upload_round']}_{uploaded.file_id if hasattr(uploaded, 'file_id') else uploaded.name}"
    left, middle, right = st.columns(3)
    fmt = left.selectbox(_("Format"), ingest.FORMAT_CHOICES, key=f"fmt_{key}",
                         help=_("auto: from the file's name and content"))
    enc = middle.selectbox(_("Encoding"), ingest.ENCODING_CHOICES, key=f"enc_{key}",
                           help=_("auto: detected from the bytes"))
    sheet = state.get(f"sheet_{key}")
    prepared = candidate = None
    try:
        candidate = read_upload(data, uploaded.name, fmt, enc, sheet)
    except UserError as exc:
        refusal(exc)
    if candidate is not None:
        if candidate.format == "xlsx":
            right.selectbox(_("Sheet"), candidate.sheets, index=candidate.sheets.index(candidate.sheet),
                            key=f"sheet_{key}", help=_("The sheet with the most rows is read first."))
        elif candidate.encoding:
            right.text_input(_("Encoding used"), candidate.encoding, disabled=True, key=f"enc_used_{key}")

        mapping: dict = {}
        mkey = f"{key}_{candidate.format}_{candidate.sheet}"  # another sheet or format: guess the columns afresh
        task = None
        if candidate.task == "text-classification":
            gen_guess = generation.guess_columns(candidate)
            likely_generation = gen_guess["mode"] == "messages" or (
                gen_guess["mode"] == "prompt-response" and validate.guess_columns(candidate)["label"] in (
                    None, gen_guess["prompt"], gen_guess["response"]))
            purpose = st.radio(
                _("What will this data train?"), [_(PURPOSES["classification"]), _(PURPOSES["generation"])],
                index=1 if likely_generation else 0, horizontal=True, key=f"purpose_{mkey}",
                help=_("Generation: a text column (the model learns to write such text), a prompt and a response "
                       "column (it learns to answer), or chat messages (JSON lines)."))
            if purpose == _(PURPOSES["generation"]):
                task = generation.TASK
        if task == generation.TASK:
            columns = candidate.columns
            options = [NONE] + columns
            modes = list(generation.MODES)
            mode = st.selectbox(_("Kind of data"), modes, index=modes.index(gen_guess["mode"]), key=f"gmode_{mkey}",
                                format_func=lambda m: _(generation.MODE_WORDS[m]))
            roles = {"text": ["text"], "prompt-response": ["prompt", "response"], "messages": ["messages"]}[mode]
            st.markdown(_("**Columns** (guessed from their names and contents; change them if they are wrong)"))
            cells = st.columns(len(roles) + 1)
            mapping["mode"] = mode
            for cell, role in zip(cells, roles):
                guessed = gen_guess.get(role)
                mapping[role] = cell.selectbox(ROLE_LABELS[role](), options, format_func=column_words,
                                               index=options.index(guessed) if guessed in options else 0,
                                               key=f"g{role}_{mkey}")
            mapping["split"] = cells[-1].selectbox(
                _("Split column (optional)"), options, format_func=column_words,
                index=options.index(gen_guess["split"]) if gen_guess["split"] else 0,
                key=f"gsplit_{mkey}", help=_("A column holding train / validation / test. With none, Bellwether splits."),
            )
            mapping = {k: (None if v == NONE else v) for k, v in mapping.items()}
        elif candidate.task == "text-classification":
            guess = validate.guess_columns(candidate)
            columns = candidate.columns
            options = [NONE] + columns
            st.markdown(_("**Columns** (guessed from their names and contents; change them if they are wrong)"))
            c1, c2, c3 = st.columns(3)
            mapping["text"] = c1.selectbox(_("Text column"), options, format_func=column_words,
                                           index=options.index(guess["text"]) if guess["text"] else 0, key=f"text_{mkey}")
            mapping["label"] = c2.selectbox(_("Label column"), options, format_func=column_words,
                                            index=options.index(guess["label"]) if guess["label"] else 0,
                                            key=f"label_{mkey}")
            mapping["split"] = c3.selectbox(
                _("Split column (optional)"), options, format_func=column_words,
                index=options.index(guess["split"]) if guess["split"] else 0,
                key=f"split_{mkey}", help=_("A column holding train / validation / test. With none, Bellwether splits."),
            )
            mapping = {k: (None if v == NONE else v) for k, v in mapping.items()}
        else:
            st.markdown(_("**Entity tagging** file: tags written in **{scheme}**, stored as BIO.",
                          scheme=candidate.tag_scheme))

        ratios, seed = validate.DEFAULT_RATIOS, validate.DEFAULT_SEED
        if not mapping.get("split"):
            r1, r2, r3, r4 = st.columns(4)
            default_train, default_val, default_test = (round(r * 100) for r in validate.DEFAULT_RATIOS)
            train = r1.number_input(_("Train %"), 1, 100, default_train, key=f"rtrain_{key}")
            val = r2.number_input(_("Validation %"), 0, 99, default_val, key=f"rval_{key}")
            test = r3.number_input(_("Test %"), 0, 99, default_test, key=f"rtest_{key}")
            seed = int(r4.number_input(_("Seed"), 0, 2**31 - 1, validate.DEFAULT_SEED, key=f"seed_{key}"))
            ratios = (train, val, test)
        name = st.text_input(
            _("Dataset name"), Path(uploaded.name).stem, key=f"name_{key}",
            help=_("Saving under a name that exists makes a new version of it."),
        )
        with st.spinner(_("Checking the file...")):
            with plain_errors():
                prepared = check_upload(data, uploaded.name, fmt, enc, sheet, mapping, tuple(ratios), seed, task)

    if prepared is not None:
        report = prepared.report
        st.markdown("#### " + _("Validation report"))
        unit = report.unit()
        m1, m2, m3 = st.columns(3)
        sentences = unit == "sentences"
        m1.metric(_("Sentences read") if sentences else _("Rows read"), number(report.n_input_rows))
        m2.metric(_("Sentences to save") if sentences else _("Rows to save"), number(report.n_rows))
        m3.metric(_("Tags") if report.task == "token-classification" else _("Labels"), len(report.labels))
        st.markdown(_("**Split:** {description}", description=md(report.split_text())))
        for note in report.note_texts():
            st.info(md(note), icon=":material/info:")
        if report.problems:
            st.markdown(_("**{n} problem(s) found.** Read what will happen to each, then accept or cancel.",
                          n=len(report.problems)))
            for problem in report.problems:
                action = _(validate.ACTION_WORDS[problem.action]) if problem.action in validate.ACTION_WORDS \
                    else problem.action
                text = _("**{a}.** {m}", a=action, m=md(problem.text()))  # the action, then the message
                if problem.examples:
                    text += "\n\n" + "\n".join(f"- {md(example)}" for example in problem.example_texts())
                (st.info if problem.action == "kept" else st.error if problem.action == "confirm" else st.warning)(text)
        else:
            st.success(_("No problems found."))
        if report.length:
            st.caption(md(report.length_text()))
        table = pd.DataFrame(report.counts).fillna(0).astype(int).reindex(columns=list(validate.SPLITS), fill_value=0)
        table.index.name = {"token-classification": _("tag"), "generation": _("rows")}.get(report.task, _("label"))
        table.columns = [_(validate.SPLIT_WORDS[s]) for s in table.columns]
        st.dataframe(table, width="content")
        label_ok = False
        if report.needs_label_choice:
            label_ok = st.checkbox(
                _("Yes, '{column}' is the label column (I have looked at its values)",
                  column=md(report.mapping.get("label"))),
                key=f"label_ok_{key}_{report.mapping.get('label')}",
                help=_("Otherwise choose the column that holds the label above. Accept stays off until you choose."))
        b1, b2, _gap = st.columns([1, 1, 4])
        if b1.button(_("Accept & save"), type="primary", key=f"accept_{key}",
                     disabled=report.needs_label_choice and not label_ok):
            try:
                saved = datasets.save(conn, candidate, prepared, name, actor=current_user(), label_confirmed=label_ok)
            except UserError as exc:
                st.error(md(exc), icon=":material/error:")
            else:
                state["selected_dataset"] = saved["ref"]
                reset_upload(_("Saved dataset {name} version {version} ({rows}).", name=md(saved["name"]),
                               version=saved["version"], rows=unit_words(unit, saved["n_rows"])))
                st.rerun()
        if b2.button(_("Cancel"), key=f"cancel_{key}"):
            reset_upload(_("Cancelled: nothing was saved."))
            st.rerun()

# ---- saved datasets ------------------------------------------------------------------------------------------

st.divider()
st.subheader(_("Saved datasets"))
saved_all = datasets.list_datasets(conn)
if not saved_all:
    st.info(_("No dataset saved yet. Upload a labelled file above."))
    st.stop()

st.dataframe(
    pd.DataFrame([
        {_("dataset"): d["ref"], _("task"): task_words(d["task"]), _("rows"): d["n_rows"],
         _("labels"): len(d["labels"]), _("source file"): d["source_file"], _("created"): d["created_at"],
         _("by"): d["created_by"]}
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
ref = st.selectbox(_("Show dataset"), refs, key="show_dataset")
with plain_errors():
    dataset = next(d for d in saved_all if d["ref"] == ref)
    rows = dataset_rows(conn, str(paths.home()), dataset["id"], dataset["created_at"])
    tagging = dataset["task"] == "token-classification"
    st.markdown(_(
        "**{ref}** — {task}, {rows}, from {source} (sha256 `{sha}…`), saved {created} by {by}.",
        ref=md(dataset["ref"]), task=task_words(dataset["task"]),
        rows=unit_words("sentences" if tagging else "rows", dataset["n_rows"]), source=md(dataset["source_file"]),
        sha=(dataset["source_sha256"] or "")[:12], created=dataset["created_at"], by=md(dataset["created_by"])))
    preview, distribution, lengths = st.tabs([_("Preview"), _("Label distribution"), _("Text length")])
    with preview:
        split = st.selectbox(_("Split"), ["all", *validate.SPLITS], key="preview_split",
                             format_func=lambda s: _("all") if s == "all" else _(validate.SPLIT_WORDS[s]))
        shown = rows if split == "all" else rows[rows["split"] == split]
        columns = ["row_id", "split", "text", "tags"] if tagging else ["row_id", "split", "text", "label"]
        frame = shown[columns].head(500).copy()
        if tagging:
            frame["tags"] = frame["tags"].map(lambda tags: " ".join(tags))
        frame["split"] = frame["split"].map(lambda s: _(validate.SPLIT_WORDS[s]) if s in validate.SPLIT_WORDS else s)
        st.dataframe(frame.rename(columns={"row_id": _("row_id"), "split": _("split"), "text": _("text"),
                                           "label": _("label"), "tags": _("tags")}), hide_index=True, width="stretch")
        st.caption(_("The first {n} of {total} rows.", n=number(len(frame)), total=number(len(shown))))
    with distribution:
        counts = [
            {"split": _(validate.SPLIT_WORDS[s]) if s in validate.SPLIT_WORDS else s, "label": plot_text(label),
             "count": n}
            for s, by_label in dataset["counts"].items()
            for label, n in by_label.items()
            if not (tagging and label == "O")
        ]
        if counts:
            chart = px.bar(
                pd.DataFrame(counts), x="label", y="count", color="split", barmode="group",
                category_orders={"split": [_(validate.SPLIT_WORDS[s]) for s in validate.SPLITS]},
                labels={"label": _("tag") if tagging else _("label"), "count": _("count"), "split": _("split")},
                title=_("Tags per split (tokens, O left out)") if tagging else _("Labels per split"),
            )
            st.plotly_chart(chart_style(chart), width="stretch")
    with lengths:
        rows["length"] = rows["tokens"].map(len) if tagging else rows["text"].str.len()
        shown_rows = rows.assign(split=rows["split"].map(lambda s: _(validate.SPLIT_WORDS.get(s, s))))
        chart = px.histogram(
            shown_rows, x="length", color="split", nbins=50,
            category_orders={"split": [_(validate.SPLIT_WORDS[s]) for s in validate.SPLITS]},
            labels={"length": _("tokens per sentence") if tagging else _("characters per text"), "split": _("split"),
                    "count": _("count")},
            title=_("Text length"),
        )
        st.plotly_chart(chart_style(chart), width="stretch")

    if not can("dataset.delete", owner=dataset.get("created_by")):
        st.stop()
    st.markdown("#### " + _("Delete"))
    if state.get("confirm_delete") == ref:
        st.warning(_("Delete dataset {ref} and its copy of the source file? This cannot be undone.", ref=md(ref)))
        d1, d2, _gap = st.columns([1, 1, 4])
        if d1.button(_("Yes, delete"), type="primary", key="delete_yes"):
            try:
                datasets.delete(conn, ref, confirm=True, actor=current_user())
            except UserError as exc:
                state.pop("confirm_delete", None)
                st.error(md(exc), icon=":material/error:")
            else:
                state.pop("confirm_delete", None)
                state.pop("selected_dataset", None)
                state["flash"] = _("Deleted dataset {ref}.", ref=md(ref))
                st.rerun()
        if d2.button(_("Keep it"), key="delete_no"):
            state.pop("confirm_delete", None)
            st.rerun()
    elif st.button(_("Delete {ref}…", ref=md(ref)), key="delete"):
        state["confirm_delete"] = ref
        st.rerun()
