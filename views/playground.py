"""Playground and generation report: a finished generation run answers prompts, streamed token by token.

The report tab compares the base model and the fine-tuned model on the same held-out rows (perplexity, ROUGE, BLEU,
and the outputs side by side); the compare tab puts this run beside another generation run (their figures, and their
outputs on the prompts both were evaluated on). The playground tab streams the fine-tuned model's answer (optionally the base model's
beside it) with sampling controls; with a chat template it keeps a conversation. Generation runs in the engine's
thread (engine.models.generate.stream) with bounded new tokens, so the page only writes pieces as they come.
"""

from __future__ import annotations

import streamlit as st

from engine.i18n import _
from engine.jobs import runs
from engine.models import generate
from engine.reports import generation as report
from views._shared import connect, plain_errors, require_sign_in, run_picker, stream_plain



def headings(frame):
    """A report table with its column headings (and figure names) in the reader's language; the engine's tables, and
    the downloads, keep their fixed English names."""
    words = {"figure": _("figure"), "base model": _("base model"), "fine-tuned": _("fine-tuned"),
             "row_id": _("row_id"), "prompt": _("prompt"), "reference": _("reference"),
             "base_output": _("base_output"), "fine_tuned_output": _("fine_tuned_output")}

    def heading(name):
        name = str(name)
        if name.startswith("run #") and name.endswith(" base") and name[5:-5].isdigit():
            return _("run #{run_id} base", run_id=name[5:-5])
        if name.startswith("run #") and name[5:].isdigit():
            return _("run #{run_id}", run_id=name[5:])
        return words.get(name, name)

    shown = frame.rename(columns=heading)
    if "figure" in frame.columns:
        shown[heading("figure")] = [_(str(v)) for v in frame["figure"]]
    return shown


require_sign_in()
st.title(_("Playground"))
conn = connect()
finished = runs.finished_runs(conn, task="generation")
if not finished:
    st.info(_("No finished generation run yet. Import generation data on the Data page (prompt and response columns, "
              "a text column, or chat messages), train it on the Train page, and it appears here."),
            icon=":material/hourglass_empty:")
    st.stop()
run = runs.get(conn, run_picker(finished, "play-run")["id"])
run_id = run["id"]

play_tab, report_tab, compare_tab = st.tabs([_("Playground"), _("Report"), _("Compare runs")])

with report_tab:
    with plain_errors():
        contains = st.text_input(_("Show only rows containing"), key="gen-filter",
                                 help=_("Filters the table below by any of prompt, reference or outputs; the figures "
                                        "are for all held-out rows."))
        rep = report.build(conn, run, contains=contains or None)
        st.markdown(_("Base model against the fine-tuned model on the same held-out rows ({n} prompts generated "
                      "greedily). Perplexity: lower is better (how surprised the model is by the real text); ROUGE and "
                      "BLEU: higher is better (word overlap with the reference).", n=rep["n_generated"]))
        st.dataframe(headings(report.figures_frame(rep)), hide_index=True, key="gen-figures")
        st.dataframe(headings(report.rows_frame(rep)), hide_index=True, key="gen-rows")
        left, right, third = st.columns(3)
        third.download_button(_("Model folder (zip, with model card)"), lambda: report.model_zip(run),
                              f"run-{run_id}-model.zip", "application/zip", on_click="ignore",
                              icon=":material/download:", key="gen-model")
        left.download_button(_("Outputs (CSV)"), lambda: report.rows_csv(rep), f"run-{run_id}-outputs.csv", "text/csv",
                             on_click="ignore", icon=":material/download:", key="gen-csv")
        right.download_button(_("Report (XLSX)"), lambda: report.xlsx(rep), f"run-{run_id}-generation.xlsx",
                              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                              on_click="ignore", icon=":material/download:", key="gen-xlsx")

with compare_tab:
    others = [r for r in finished if r["id"] != run_id]
    if not others:
        st.info(_("Comparing needs a second finished generation run."), icon=":material/info:")
    else:
        titles = {r["id"]: runs.title(r) for r in others}
        asked = st.query_params.get("compare")
        ids = list(titles)
        other_id = st.selectbox(_("Compare with"), ids, format_func=titles.get, key="gen-compare-run",
                                index=ids.index(int(asked)) if asked and asked.isdigit() and int(asked) in titles else 0)
        with plain_errors():
            pair = [run, runs.get(conn, other_id)]
            st.markdown(_("Figures of both runs on their own held-out rows, each beside its base model. Perplexity: "
                          "lower is better; ROUGE and BLEU: higher is better."))
            st.dataframe(headings(report.compare(pair)), hide_index=True, key="gen-compare-figures")
            shared_sets = report.common_splits(conn, [run_id, other_id])
            if not shared_sets:
                st.caption(_("These runs have no held-out outputs to set side by side."))
            else:
                split = st.selectbox(_("Prompts"), shared_sets, key="gen-compare-split",
                                     format_func=lambda s: _("held-out rows") if s == "test" else
                                     _("evaluated file {name}", name=s[5:]))
                outputs = report.compare_outputs(conn, pair, split)
                if outputs.empty:
                    st.caption(_("No prompt is in both runs' outputs: they were trained on different data. Evaluate "
                                 "both on the same file (`python -m engine evaluate RUN FILE`) to compare them on it."))
                else:
                    st.caption(_("{n} prompts both runs answered (greedy), with the reference.", n=len(outputs)))
                    st.dataframe(headings(outputs), hide_index=True, key="gen-compare-outputs")

with play_tab:
    with st.expander(_("Sampling settings"), expanded=False):
        c1, c2, c3 = st.columns(3)
        max_new = c1.number_input(_("Max new tokens"), 1, generate.MAX_NEW_TOKENS_LIMIT, 64, key="s-max",
                                  help=_("The longest answer, in tokens (a token is about three quarters of a word)."))
        greedy = c1.checkbox(_("Greedy (always the likeliest word)"), key="s-greedy",
                             help=_("The same answer every time; the settings below are then ignored."))
        temperature = c2.slider(_("Temperature"), 0.05, 2.0, 0.7, 0.05, key="s-temp",
                                help=_("Higher gives more varied, riskier wording; lower, safer and more repetitive."))
        top_p = c2.slider(_("Top-p"), 0.05, 1.0, 0.9, 0.05, key="s-top-p",
                          help=_("Draw only from the likeliest words that together make up this share."))
        top_k = c3.number_input(_("Top-k"), 0, 1000, 50, key="s-top-k",
                                help=_("Draw only from this many likeliest words (0: no limit)."))
        penalty = c3.slider(_("Repetition penalty"), 1.0, 2.0, 1.1, 0.05, key="s-rep",
                            help=_("Above 1 makes the model less likely to repeat itself."))
        seed = c1.number_input(_("Seed"), 0, 2**31 - 1, 0, key="s-seed",
                               help=_("The same seed and settings give the same answer."))
    sampling = generate.Sampling(max_new_tokens=int(max_new), greedy=greedy, temperature=temperature, top_p=top_p,
                                 top_k=int(top_k), repetition_penalty=penalty, seed=int(seed))
    with plain_errors():
        tokenizer, model = generate.load(run["model_dir"])
        chat = generate.has_chat_template(tokenizer)
        side_by_side = st.checkbox(_("Show the base model's answer beside it"), key="play-base")
        history_key = f"chat-{run_id}"
        history = st.session_state.setdefault(history_key, [])
        if chat:
            st.caption(_("This model has a chat template: the conversation so far is sent with each message."))
            for turn in history:
                st.chat_message(turn["role"]).text(turn["content"])
            if history and st.button(_("Clear the conversation"), key="play-clear"):
                st.session_state[history_key] = []
                st.rerun()
        prompt = st.chat_input(_("Type a prompt, e.g. an article summary to turn into a headline"), key="play-prompt")
        if prompt:
            messages = (history if chat else []) + [{"role": "user", "content": prompt}]
            st.chat_message("user").text(prompt)
            columns = st.columns(2) if side_by_side else [st.container()]
            with columns[0], st.chat_message("assistant"):
                st.caption(_("Fine-tuned"))
                answer = stream_plain(generate.stream(
                    tokenizer, model, generate.prompt_text(tokenizer, messages=messages), sampling))
            if side_by_side:
                base_tok, base_model = generate.load(report.base_source(run))
                with columns[1], st.chat_message("assistant"):
                    st.caption(_("Base model"))
                    stream_plain(generate.stream(
                        base_tok, base_model, generate.prompt_text(base_tok, messages=messages), sampling))
            if chat:
                history.extend([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
