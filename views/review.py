"""Review: the model's doubtful calls one at a time (keys: a digit for a label, Enter to accept, S to skip), then the
answers as a new dataset version, a retrain with the same settings, the comparison, and promotion to a feed.

Each answer is stored the moment it is given (engine.review.items); the item on screen is held for this reviewer
(a lease), so two reviewers never see the same item and a reload shows the same one.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from engine.data import datasets
from engine.i18n import N_, _
from engine.jobs import runs
from engine.monitor import feeds
from engine.reports import reporting
from engine.review import corrections, items, promote
from views._shared import can, choose_interface_language, connect, md, plain_errors, queued, require_sign_in

ALL = "(every queue)"  # the picker's value for every queue; shown translated
ACCEPT, SKIP = N_("Accept (Enter)"), N_("Skip (S)")  # the key bindings find these buttons by their (translated) text
# A table's fixed column names (engine.review) -> the heading a person reads.
HEADINGS = {
    "rows": N_("which rows"), "n": N_("n"), "old accuracy": N_("old accuracy"), "new accuracy": N_("new accuracy"),
    "old macro-F1": N_("old macro-F1"), "new macro-F1": N_("new macro-F1"), "fixed": N_("fixed"),
    "broken": N_("broken"), "item": N_("item"), "text": N_("text"), "label": N_("label"),
    "dataset_label": N_("dataset_label"), "split": N_("split"), "promoted_at": N_("promoted_at"),
    "run_id": N_("run_id"), "run_name": N_("run_name"), "previous_run_id": N_("previous_run_id"),
    "promoted_by": N_("promoted_by"), "rescore_job_id": N_("rescore_job_id"), "note": N_("note"),
}
ORDER_WORDS = {"margin": N_("margin"), "entropy": N_("entropy")}
# A retrain that has not succeeded, by its status (stored as a key): the whole sentence.
WAITING = {"queued": N_("Run {run_id} (correcting run {old_id}) is queued; the comparison opens here when it has "
                        "finished."),
           "running": N_("Run {run_id} (correcting run {old_id}) is running; the comparison opens here when it has "
                         "finished.")}
ENDED = {"failed": N_("Run {run_id} failed; see the Runs page."),
         "cancelled": N_("Run {run_id} cancelled; see the Runs page.")}


def headings(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=lambda c: _(HEADINGS[c]) if c in HEADINGS else c)

user = require_sign_in()
conn = connect()
state = st.session_state
st.title(_("Review"))
if not can("review.label"):
    st.info(_("Reviewing is for analysts and administrators. Ask an administrator if you need it."),
            icon=":material/lock:")
    st.stop()
if state.get("review_flash"):
    message, level = state.pop("review_flash")
    getattr(st, level)(md(message))


def answer(item_id: int, label: str | None) -> None:
    """A button's callback: store the answer at once (before the page runs again and shows the next item)."""
    c = connect()  # callbacks may run on another thread than the script's connection
    choose_interface_language(user)  # and before the script sets the reader's language: a refusal reads in it too
    try:
        if label is None:
            items.skip(c, item_id, actor=user)
        else:
            items.label(c, item_id, label, actor=user)
    except Exception as exc:  # noqa: BLE001 - a second press on an answered item: say so, keep going
        if items.get(c, item_id).get("answered_by") != user.name:
            state["review_flash"] = (str(exc), "warning")
    finally:
        c.close()


def key_bindings(n_labels: int) -> None:
    """Digits, Enter and S press the matching button (found by its visible text, in the reader's language); never
    while typing in a field."""
    st.iframe("""<script>
const doc = window.parent.document;
if (window.parent.__bwReviewKeys) { doc.removeEventListener('keydown', window.parent.__bwReviewKeys, true); }
window.parent.__bwReviewKeys = function (e) {
  const t = e.target; const tag = (t && t.tagName || '').toLowerCase();
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  if (tag === 'input' || tag === 'textarea' || tag === 'select' || (t && t.isContentEditable)) return;
  if (t && t.closest && t.closest('[role="listbox"], [role="combobox"], [data-baseweb="select"]')) return;
  let prefix = null;
  if (/^[1-9]$/.test(e.key) && Number(e.key) <= %d) prefix = e.key + ' · ';
  else if (e.key === 'Enter') prefix = %s;
  else if (e.key === 's' || e.key === 'S') prefix = %s;
  if (!prefix) return;
  const button = Array.from(doc.querySelectorAll('button')).find(
    b => (b.innerText || '').trim().startsWith(prefix) && !b.disabled && b.offsetParent !== null);  // shown only
  if (button) { e.preventDefault(); e.stopPropagation(); button.click(); }
};
doc.addEventListener('keydown', window.parent.__bwReviewKeys, true);
</script>""" % (n_labels, json.dumps(_(ACCEPT)), json.dumps(_(SKIP))), height=1)


review_tab, data_tab, promote_tab = st.tabs([_("Review"), _("Add to dataset and retrain"), _("Promote")])

# ---- review one item at a time ---------------------------------------------------------------------------------

with review_tab:
    all_queues = items.queues(conn)
    names = [ALL] + [q["queue"] for q in all_queues]
    asked = st.query_params.get("queue")
    c1, c2 = st.columns([3, 1])
    queue_name = c1.selectbox(_("Queue"), names, index=names.index(asked) if asked in names else 0, key="rv-queue",
                              format_func=lambda q: _("(every queue)") if q == ALL else
                              _("{queue} ({n} left)", queue=q,
                                n=next(x for x in all_queues if x["queue"] == q)["left"]))
    again = c2.checkbox(_("Show skipped items again"), key="rv-again")
    queue = None if queue_name == ALL else queue_name
    with plain_errors():
        item = items.next_item(conn, queue, again=again, actor=user)
        counts = items.counts(conn, queue)
        st.caption(" · ".join([_("**{done}** done · **{left}** left", done=counts["done"], left=counts["left"])]
                              + ([_("{n} skipped", n=counts["skipped"])] if counts["skipped"] else [])
                              + [_("reviewing as {name}", name=md(user.name))]))
        if item is None:
            st.success(_("Nothing left to review here.") if all_queues else
                       _("Nothing to review yet: queue a feed's least confident articles or a run's doubtful "
                         "predictions below."), icon=":material/task_alt:")
        else:
            labels = items.labels_for(conn, item)
            with st.container(border=True):
                st.markdown(f"#### {md(item['text'])}")
                suggestion = item.get("suggested_label")
                if suggestion:
                    st.markdown(" · ".join(
                        [_("Model: **{label}**", label=md(suggestion))]
                        + ([_("confidence {value}", value=f"{item['confidence']:.2f}")]
                           if item.get("confidence") is not None else [])
                        + ([_("margin {value}", value=f"{item['margin']:.2f}")] if item.get("margin") is not None
                           else [])))
                if item["probs"]:
                    st.caption(" · ".join(f"{md(k)} {v:.2f}" for k, v in item["probs"].items()))
                st.caption(" · ".join([md(item["queue"])]
                                      + ([_("run {run_id}", run_id=item["run_id"])] if item.get("run_id") else [])
                                      + ([_("note: {note}", note=md(item["note"]))] if item.get("note") else [])))
            cols = st.columns(len(labels) + 2)
            for i, label in enumerate(labels[:9]):
                cols[i].button(f"{i + 1} · {label}", key=f"rv-label-{i}", on_click=answer, args=(item["id"], label),
                               width="stretch", type="primary" if label == suggestion else "secondary")
            cols[-2].button(_(ACCEPT), key="rv-accept", on_click=answer, args=(item["id"], suggestion),
                            disabled=not suggestion, width="stretch")
            cols[-1].button(_(SKIP), key="rv-skip", on_click=answer, args=(item["id"], None), width="stretch")
            st.caption(_("Keys: 1-{n} choose a label, Enter accepts the model's label, S skips.",
                         n=min(len(labels), 9)))
            key_bindings(min(len(labels), 9))

    with st.expander(_("Queue items to review")):
        feed_tab, run_tab = st.tabs([_("A feed's articles"), _("A run's predictions")])
        with feed_tab:
            all_feeds = feeds.list_feeds(conn)
            if not all_feeds:
                st.caption(_("No feeds yet."))
            else:
                f1, f2, f3 = st.columns([2, 1, 1])
                feed_name = f1.selectbox(_("Feed"), [f["name"] for f in all_feeds], key="rv-feed")
                limit = f2.number_input(_("How many"), 1, 10_000, 100, key="rv-feed-limit")
                order = f3.radio(_("Least confident by"), items.ORDERS, key="rv-order", horizontal=True,
                                 format_func=lambda o: _(ORDER_WORDS.get(o, o)))
                if st.button(_("Queue the least confident articles"), key="rv-queue-feed"):
                    with plain_errors():
                        got = items.queue_feed(conn, feed_name, limit=int(limit), order=order, actor=user)
                        state["review_flash"] = (_("{n} articles added to {queue}.", n=got["added"],
                                                   queue=got["queue"]), "success")
                        st.rerun()
        with run_tab:
            finished = [r for r in runs.finished_runs(conn) if r.get("task") == "text-classification"]
            if not finished:
                st.caption(_("No finished text-classification run yet."))
            else:
                r1, r2, r3 = st.columns([2, 1, 1])
                by_id = {r["id"]: r for r in finished}
                run_id = r1.selectbox(_("Run"), list(by_id), format_func=lambda i: runs.title(by_id[i]), key="rv-run")
                splits = ["test"] + [x for x in reporting.splits(conn, run_id) if x != "test"]
                split = r2.selectbox(_("Rows"), splits, key="rv-split",
                                     format_func=lambda s: _("test") if s == "test" else
                                     _("eval:{name}", name=s[5:]) if s.startswith("eval:") else s)
                below = r3.number_input(_("Also below confidence"), 0.0, 1.0, 0.6, 0.05, key="rv-below")
                if st.button(_("Queue mistakes and unsure rows"), key="rv-queue-run"):
                    with plain_errors():
                        got = items.queue_predictions(conn, run_id, split, below=float(below), actor=user)
                        state["review_flash"] = (_("{n} rows added to {queue}.", n=got["added"], queue=got["queue"]),
                                                 "success")
                        st.rerun()

# ---- answers -> data -> retrain -> compare -----------------------------------------------------------------------

with data_tab:
    labelled = corrections.answered(conn, queue)
    st.markdown(_("**{n}** labelled items in {queue}.", n=len(labelled), queue=md(queue)) if queue else
                _("**{n}** labelled items in every queue.", n=len(labelled)))
    text_sets = [d for d in datasets.list_datasets(conn) if d["task"] == "text-classification"]
    if can("dataset.add_reviewed") and labelled and text_sets:
        refs = [d["ref"] for d in text_sets]
        target = st.selectbox(_("Dataset version to extend"), refs, key="rv-dataset",
                              help=_("The new version keeps every row of this one (the same validation and test rows) "
                                     "and adds the reviewed items to its training split."))
        if st.button(_("Add to dataset ({n} items)", n=len(labelled)), key="rv-add", type="primary"):
            with plain_errors():
                got = corrections.add_to_dataset(conn, target, queue=queue, actor=user)
                state["review_added"] = {"ref": got["dataset"]["ref"], "added": got["added"],
                                         "conflicts": got["conflicts"], "already": len(got["already"])}
                st.rerun()
    added = state.get("review_added")
    if added:
        st.success(md(_("Saved {ref}: {n} reviewed rows added to train; validation and test rows unchanged. {already} "
                        "were already there.", ref=added["ref"], n=added["added"], already=added["already"])
                      if added["already"] else
                      _("Saved {ref}: {n} reviewed rows added to train; validation and test rows unchanged.",
                        ref=added["ref"], n=added["added"])))
        if added["conflicts"]:
            st.warning(_("{n} reviewed texts are in the dataset with another label: not added, nothing overwritten.",
                         n=len(added["conflicts"])))
            st.dataframe(headings(pd.DataFrame(added["conflicts"])), hide_index=True, key="rv-conflicts")

    st.subheader(_("Retrain and compare"))
    versions = corrections.reviewed_versions(conn)
    finished = {r["id"]: r for r in runs.finished_runs(conn) if r.get("task") == "text-classification"}
    if not versions or not finished:
        st.caption(_("Add reviewed items to a dataset first; then retrain the run they corrected on the new version."))
    else:
        doubted = [r for r in items.corrected_runs(conn, queue) if r in finished] or list(finished)
        c1, c2 = st.columns(2)
        old_id = c1.selectbox(_("Run to correct"), doubted, format_func=lambda i: runs.title(finished[i]),
                              key="rv-old-run")
        version = c2.selectbox(_("On the new version"), [v["ref"] for v in versions], key="rv-version")
        if can("train.submit") and st.button(_("Retrain with the same settings"), key="rv-retrain", type="primary"):
            with plain_errors():
                new_id = corrections.retrain(conn, old_id, version, actor=user)
                state["review_flash"] = queued(_("Queued run {run_id}: run {old_id}'s settings on {dataset}.",
                                                 run_id=new_id, old_id=old_id, dataset=version))
                st.rerun()

        @st.fragment(run_every=5)
        def comparison() -> None:
            c = connect()
            done = corrections.retrains(c)
            if not done:
                return
            latest = done[0]
            if latest["status"] in WAITING:
                st.info(_(WAITING[latest["status"]], run_id=latest["id"], old_id=latest["corrects"]),
                        icon=":material/hourglass_top:")
                return
            if latest["status"] != "succeeded":
                st.warning(_(ENDED.get(latest["status"], N_("Run {run_id} {status}; see the Runs page.")),
                             run_id=latest["id"], status=latest["status"]))
                return
            with plain_errors():
                result = corrections.compare(c, int(latest["corrects"]), latest["id"])
                st.markdown(_("Run {old} (old) against run {new} (new), on the same rows (the reviewed items were in "
                              "the new run's training data):", old=result["old_run"], new=result["new_run"]))
                figures = ("old accuracy", "new accuracy", "old macro-F1", "new macro-F1")
                st.dataframe(headings(pd.DataFrame(corrections.comparison_rows(result))), hide_index=True,
                             key="rv-compare",
                             column_config={_(HEADINGS[k]): st.column_config.NumberColumn(format="%.3f")
                                            for k in figures})

        comparison()

# ---- promote ------------------------------------------------------------------------------------------------------

with promote_tab:
    all_feeds = feeds.list_feeds(conn)
    finished = {r["id"]: r for r in runs.finished_runs(conn) if r.get("task") == "text-classification"}
    if not all_feeds or not finished:
        st.caption(_("Promotion needs a feed and a finished run."))
    else:
        c1, c2 = st.columns(2)
        feed_name = c1.selectbox(_("Feed"), [f["name"] for f in all_feeds], key="rv-promote-feed")
        feed = next(f for f in all_feeds if f["name"] == feed_name)
        newest_retrain = next((r["id"] for r in corrections.retrains(conn) if r["id"] in finished), None)
        ids = list(finished)
        pick = c2.selectbox(_("Run"), ids, index=ids.index(newest_retrain) if newest_retrain in ids else 0,
                            format_func=lambda i: runs.title(finished[i]), key="rv-promote-run")
        rescore = st.checkbox(_("Rescore the feed with it"), value=True, key="rv-rescore")
        if can("feed.promote", feed.get("created_by")) and st.button(_("Promote"), key="rv-promote", type="primary"):
            with plain_errors():
                row = promote.promote(conn, feed_name, pick, rescore=rescore, actor=user)
                if rescore and row.get("rescore_job_id"):
                    state["review_flash"] = queued(_("Run {run_id} is now the model of feed '{feed}'. Rescoring: job "
                                                     "{job_id}.", run_id=pick, feed=feed_name,
                                                     job_id=row["rescore_job_id"]))
                else:
                    words = _("Run {run_id} is now the model of feed '{feed}'.", run_id=pick, feed=feed_name)
                    state["review_flash"] = queued(words) if rescore else (words, "success")
                st.rerun()
        history = promote.history(conn, feed_name)
        if history:
            st.dataframe(headings(pd.DataFrame(history)[["promoted_at", "run_id", "run_name", "previous_run_id",
                                                         "promoted_by", "rescore_job_id", "note"]]),
                         hide_index=True, key="rv-history")
        else:
            st.caption(_("No promotions for this feed yet."))
