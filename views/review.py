"""Review: the model's doubtful calls one at a time (keys: a digit for a label, Enter to accept, S to skip), then the
answers as a new dataset version, a retrain with the same settings, the comparison, and promotion to a feed.

Each answer is stored the moment it is given (engine.review.items); the item on screen is held for this reviewer
(a lease), so two reviewers never see the same item and a reload shows the same one.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.data import datasets
from engine.jobs import runs
from engine.monitor import feeds
from engine.reports import reporting
from engine.review import corrections, items, promote
from views._shared import can, connect, current_user, md, plain_errors, queued, require_sign_in

ALL = "(every queue)"
ACCEPT, SKIP = "Accept (Enter)", "Skip (S)"

user = require_sign_in()
conn = connect()
state = st.session_state
st.title("Review")
if not can("review.label"):
    st.info("Reviewing is for analysts and administrators. Ask an administrator if you need it.", icon=":material/lock:")
    st.stop()
if state.get("review_flash"):
    message, level = state.pop("review_flash")
    getattr(st, level)(md(message))


def answer(item_id: int, label: str | None) -> None:
    """A button's callback: store the answer at once (before the page runs again and shows the next item)."""
    c = connect()  # callbacks may run on another thread than the script's connection
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
    """Digits, Enter and S press the matching button (found by its visible text); never while typing in a field."""
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
  else if (e.key === 'Enter') prefix = 'Accept';
  else if (e.key === 's' || e.key === 'S') prefix = 'Skip';
  if (!prefix) return;
  const button = Array.from(doc.querySelectorAll('button')).find(
    b => (b.innerText || '').trim().startsWith(prefix) && !b.disabled && b.offsetParent !== null);  // shown only
  if (button) { e.preventDefault(); e.stopPropagation(); button.click(); }
};
doc.addEventListener('keydown', window.parent.__bwReviewKeys, true);
</script>""" % n_labels, height=1)


review_tab, data_tab, promote_tab = st.tabs(["Review", "Add to dataset and retrain", "Promote"])

# ---- review one item at a time ---------------------------------------------------------------------------------

with review_tab:
    all_queues = items.queues(conn)
    names = [ALL] + [q["queue"] for q in all_queues]
    asked = st.query_params.get("queue")
    c1, c2 = st.columns([3, 1])
    queue_name = c1.selectbox("Queue", names, index=names.index(asked) if asked in names else 0, key="rv-queue",
                              format_func=lambda q: q if q == ALL else
                              f"{q} ({next(x for x in all_queues if x['queue'] == q)['left']} left)")
    again = c2.checkbox("Show skipped items again", key="rv-again")
    queue = None if queue_name == ALL else queue_name
    with plain_errors():
        item = items.next_item(conn, queue, again=again, actor=user)
        counts = items.counts(conn, queue)
        st.caption(f"**{counts['done']}** done · **{counts['left']}** left"
                   + (f" · {counts['skipped']} skipped" if counts["skipped"] else "")
                   + f" · reviewing as {md(user.name)}")
        if item is None:
            st.success("Nothing left to review here." if all_queues else
                       "Nothing to review yet: queue a feed's least confident articles or a run's doubtful "
                       "predictions below.", icon=":material/task_alt:")
        else:
            labels = items.labels_for(conn, item)
            with st.container(border=True):
                st.markdown(f"#### {md(item['text'])}")
                suggestion = item.get("suggested_label")
                if suggestion:
                    conf = f" · confidence {item['confidence']:.2f}" if item.get("confidence") is not None else ""
                    st.markdown(f"Model: **{md(suggestion)}**{conf}"
                                + (f" · margin {item['margin']:.2f}" if item.get("margin") is not None else ""))
                if item["probs"]:
                    st.caption(" · ".join(f"{md(k)} {v:.2f}" for k, v in item["probs"].items()))
                where = item["queue"] + (f" · run {item['run_id']}" if item.get("run_id") else "")
                st.caption(md(where) + (f" · note: {md(item['note'])}" if item.get("note") else ""))
            cols = st.columns(len(labels) + 2)
            for i, label in enumerate(labels[:9]):
                cols[i].button(f"{i + 1} · {label}", key=f"rv-label-{i}", on_click=answer, args=(item["id"], label),
                               width="stretch", type="primary" if label == suggestion else "secondary")
            cols[-2].button(ACCEPT, key="rv-accept", on_click=answer, args=(item["id"], suggestion),
                            disabled=not suggestion, width="stretch")
            cols[-1].button(SKIP, key="rv-skip", on_click=answer, args=(item["id"], None), width="stretch")
            st.caption("Keys: 1-%d choose a label, Enter accepts the model's label, S skips." % min(len(labels), 9))
            key_bindings(min(len(labels), 9))

    with st.expander("Queue items to review"):
        feed_tab, run_tab = st.tabs(["A feed's articles", "A run's predictions"])
        with feed_tab:
            all_feeds = feeds.list_feeds(conn)
            if not all_feeds:
                st.caption("No feeds yet.")
            else:
                f1, f2, f3 = st.columns([2, 1, 1])
                feed_name = f1.selectbox("Feed", [f["name"] for f in all_feeds], key="rv-feed")
                limit = f2.number_input("How many", 1, 10_000, 100, key="rv-feed-limit")
                order = f3.radio("Least confident by", items.ORDERS, key="rv-order", horizontal=True)
                if st.button("Queue the least confident articles", key="rv-queue-feed"):
                    with plain_errors():
                        got = items.queue_feed(conn, feed_name, limit=int(limit), order=order, actor=user)
                        state["review_flash"] = (f"{got['added']} articles added to {got['queue']}.", "success")
                        st.rerun()
        with run_tab:
            finished = [r for r in runs.finished_runs(conn) if r.get("task") == "text-classification"]
            if not finished:
                st.caption("No finished text-classification run yet.")
            else:
                r1, r2, r3 = st.columns([2, 1, 1])
                by_id = {r["id"]: r for r in finished}
                run_id = r1.selectbox("Run", list(by_id), format_func=lambda i: runs.title(by_id[i]), key="rv-run")
                splits = ["test"] + [x for x in reporting.splits(conn, run_id) if x != "test"]
                split = r2.selectbox("Rows", splits, key="rv-split")
                below = r3.number_input("Also below confidence", 0.0, 1.0, 0.6, 0.05, key="rv-below")
                if st.button("Queue mistakes and unsure rows", key="rv-queue-run"):
                    with plain_errors():
                        got = items.queue_predictions(conn, run_id, split, below=float(below), actor=user)
                        state["review_flash"] = (f"{got['added']} rows added to {got['queue']}.", "success")
                        st.rerun()

# ---- answers -> data -> retrain -> compare -----------------------------------------------------------------------

with data_tab:
    labelled = corrections.answered(conn, queue)
    st.markdown(f"**{len(labelled)}** labelled items" + (f" in {md(queue)}" if queue else " in every queue") + ".")
    text_sets = [d for d in datasets.list_datasets(conn) if d["task"] == "text-classification"]
    if can("dataset.add_reviewed") and labelled and text_sets:
        refs = [d["ref"] for d in text_sets]
        target = st.selectbox("Dataset version to extend", refs, key="rv-dataset",
                              help="The new version keeps every row of this one (the same validation and test rows) "
                                   "and adds the reviewed items to its training split.")
        if st.button(f"Add to dataset ({len(labelled)} items)", key="rv-add", type="primary"):
            with plain_errors():
                got = corrections.add_to_dataset(conn, target, queue=queue, actor=user)
                state["review_added"] = {"ref": got["dataset"]["ref"], "added": got["added"],
                                         "conflicts": got["conflicts"], "already": len(got["already"])}
                st.rerun()
    added = state.get("review_added")
    if added:
        st.success(md(f"Saved {added['ref']}: {added['added']} reviewed rows added to train; validation and test rows "
                      f"unchanged." + (f" {added['already']} were already there." if added["already"] else "")))
        if added["conflicts"]:
            st.warning(f"{len(added['conflicts'])} reviewed texts are in the dataset with another label: not added, "
                       "nothing overwritten.")
            st.dataframe(pd.DataFrame(added["conflicts"]), hide_index=True, key="rv-conflicts")

    st.subheader("Retrain and compare")
    versions = corrections.reviewed_versions(conn)
    finished = {r["id"]: r for r in runs.finished_runs(conn) if r.get("task") == "text-classification"}
    if not versions or not finished:
        st.caption("Add reviewed items to a dataset first; then retrain the run they corrected on the new version.")
    else:
        doubted = [r for r in items.corrected_runs(conn, queue) if r in finished] or list(finished)
        c1, c2 = st.columns(2)
        old_id = c1.selectbox("Run to correct", doubted, format_func=lambda i: runs.title(finished[i]),
                              key="rv-old-run")
        version = c2.selectbox("On the new version", [v["ref"] for v in versions], key="rv-version")
        if can("train.submit") and st.button("Retrain with the same settings", key="rv-retrain", type="primary"):
            with plain_errors():
                new_id = corrections.retrain(conn, old_id, version, actor=user)
                state["review_flash"] = queued(f"Queued run {new_id}: run {old_id}'s settings on {version}.")
                st.rerun()

        @st.fragment(run_every=5)
        def comparison() -> None:
            c = connect()
            done = corrections.retrains(c)
            if not done:
                return
            latest = done[0]
            if latest["status"] in ("queued", "running"):
                st.info(f"Run {latest['id']} (correcting run {latest['corrects']}) is {latest['status']}; the "
                        "comparison opens here when it has finished.", icon=":material/hourglass_top:")
                return
            if latest["status"] != "succeeded":
                st.warning(f"Run {latest['id']} {latest['status']}; see the Runs page.")
                return
            with plain_errors():
                result = corrections.compare(c, int(latest["corrects"]), latest["id"])
                st.markdown(f"Run {result['old_run']} (old) against run {result['new_run']} (new), on the same rows "
                            "(the reviewed items were in the new run's training data):")
                st.dataframe(pd.DataFrame(corrections.comparison_rows(result)), hide_index=True, key="rv-compare",
                             column_config={k: st.column_config.NumberColumn(format="%.3f") for k in
                                            ("old accuracy", "new accuracy", "old macro-F1", "new macro-F1")})

        comparison()

# ---- promote ------------------------------------------------------------------------------------------------------

with promote_tab:
    all_feeds = feeds.list_feeds(conn)
    finished = {r["id"]: r for r in runs.finished_runs(conn) if r.get("task") == "text-classification"}
    if not all_feeds or not finished:
        st.caption("Promotion needs a feed and a finished run.")
    else:
        c1, c2 = st.columns(2)
        feed_name = c1.selectbox("Feed", [f["name"] for f in all_feeds], key="rv-promote-feed")
        feed = next(f for f in all_feeds if f["name"] == feed_name)
        newest_retrain = next((r["id"] for r in corrections.retrains(conn) if r["id"] in finished), None)
        ids = list(finished)
        pick = c2.selectbox("Run", ids, index=ids.index(newest_retrain) if newest_retrain in ids else 0,
                            format_func=lambda i: runs.title(finished[i]), key="rv-promote-run")
        rescore = st.checkbox("Rescore the feed with it", value=True, key="rv-rescore")
        if can("feed.promote", feed.get("created_by")) and st.button("Promote", key="rv-promote", type="primary"):
            with plain_errors():
                row = promote.promote(conn, feed_name, pick, rescore=rescore, actor=user)
                words = f"Run {pick} is now the model of feed '{feed_name}'."
                state["review_flash"] = queued(words + (f" Rescoring: job {row['rescore_job_id']}."
                                                        if row.get("rescore_job_id") else "")) if rescore else \
                    (words, "success")
                st.rerun()
        history = promote.history(conn, feed_name)
        if history:
            st.dataframe(pd.DataFrame(history)[["promoted_at", "run_id", "run_name", "previous_run_id", "promoted_by",
                                                "rescore_job_id", "note"]], hide_index=True, key="rv-history")
        else:
            st.caption("No promotions for this feed yet.")
