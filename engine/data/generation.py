"""Data for the generation task: plain text, prompt/response pairs, or OpenAI-style ``messages`` JSON lines.

Three shapes of file train a causal language model (the third task, ``generation``):

- **text**: one text column; the model learns every token (plain language-model training, as GPT-2 was tuned).
- **prompt-response**: a prompt column and a response column (instruction tuning); the loss counts the response only.
- **messages**: JSON lines whose ``messages`` column holds a conversation, ``[{"role": "system"|"user"|"assistant",
  "content": ...}, ...]`` ending with the assistant's turn; the last assistant turn is the response, the turns before
  it the prompt.

:func:`guess_columns` proposes the shape and the columns; :func:`build` checks a candidate (read by
:mod:`engine.data.ingest`) and returns a :class:`engine.data.validate.Prepared` with a :class:`GenerationReport`:
empty prompts or responses, duplicate pairs, a prompt that is the same as its response, conversations that cannot be
read, texts longer than the model's context (with the share truncated). Rows are stored as the other tasks' are:
``text`` = the prompt (or the whole text), ``label`` = the response (NULL for plain text), ``tokens`` = the whole
conversation for messages data.
"""

from __future__ import annotations

import ast
import json
from collections import Counter, defaultdict
from dataclasses import dataclass

from engine.data import validate
from engine.data.columns import SPLIT_NAMES, TEXT_NAMES
from engine.data.columns import by_name as _by_name
from engine.data.ingest import Candidate
from engine.data.wording import said
from engine.errors import UserError
from engine.i18n import N_, _, number

TASK = "generation"
MODES = ("text", "prompt-response", "messages")
MODE_WORDS = {  # shown with _()
    "text": N_("plain text (the model learns every token)"),
    "prompt-response": N_("prompt and response (the model learns to write the response; the prompt carries no loss)"),
    "messages": N_("chat conversations (the model learns the last assistant turn)"),
}
PROMPT_NAMES = ["prompt", "instruction", "question", "input", "query", "source", "description", "article", "summary",
                "note", "context", "body", "content"]
RESPONSE_NAMES = ["response", "answer", "output", "completion", "reply", "target", "headline", "headlines", "title"]
MESSAGES_NAMES = ["messages", "conversation", "conversations", "chat", "dialogue"]
ROLES = {"system", "user", "assistant"}


@dataclass
class GenerationReport(validate.CheckReport):
    """The validation report of a generation dataset: the same fields, its own wording."""

    def unit(self) -> str:
        return "rows"

    def _task_lines(self) -> list[str]:
        mode = self.mapping.get("mode")
        if mode == "prompt-response":
            columns = f"prompt = '{self.mapping.get('prompt')}', response = '{self.mapping.get('response')}'"
        elif mode == "messages":
            columns = f"messages = '{self.mapping.get('messages')}'"
        else:
            columns = f"text = '{self.mapping.get('text')}'"
        return [_("Task: text generation, {mode}.", mode=_(MODE_WORDS[mode]) if mode in MODE_WORDS else mode),
                _("Columns: {columns}.", columns=columns)]

    def _saved_lines(self) -> list[str]:
        lines = [_("To be saved: {n} rows.", n=number(self.n_rows))]
        for split in validate.SPLITS:
            lines.append("  " + _("{split}: {n} rows", split=_(validate.SPLIT_WORDS[split]),
                                  n=number(sum(self.counts.get(split, {}).values()))))
        return lines


def parse_messages(value) -> list[dict] | None:
    """A conversation from a cell (JSON, or the Python form the JSON-lines reader leaves); None when unreadable:
    not a list of {role, content} turns with known roles, or not ending with a non-empty assistant turn."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
    if not isinstance(value, list) or not value:
        return None
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            return None
        turns.append({"role": turn["role"], "content": turn["content"]})
    if turns[-1]["role"] != "assistant" or not turns[-1]["content"].strip() or len(turns) < 2:
        return None
    return turns


def _is_messages_column(series) -> bool:
    sample = [v for v in series.head(50).tolist() if str(v).strip()]
    return bool(sample) and sum(parse_messages(v) is not None for v in sample) >= 0.8 * len(sample)


def guess_columns(candidate: Candidate) -> dict:
    """The shape of a generation file and its columns: messages, else prompt + response, else one text column."""
    columns = candidate.columns
    frame = candidate.frame
    split = _by_name(columns, SPLIT_NAMES)
    if split and frame is not None and not validate._looks_like_split(frame[split], share=0.5):
        split = None
    out = {"mode": "text", "text": None, "prompt": None, "response": None, "messages": None, "split": split}
    taken = {split} if split else set()
    if frame is not None:
        named = _by_name(columns, MESSAGES_NAMES, taken)
        candidates = ([named] if named else []) + [c for c in columns if c not in taken and c != named]
        for col in candidates:
            if _is_messages_column(frame[col]):
                return {**out, "mode": "messages", "messages": col}
    response = _by_name(columns, RESPONSE_NAMES, taken)
    prompt = _by_name(columns, PROMPT_NAMES, taken | ({response} if response else set()))
    if prompt and response:
        return {**out, "mode": "prompt-response", "prompt": prompt, "response": response}
    text = _by_name(columns, TEXT_NAMES, taken)
    if text is None and frame is not None and len(frame):
        free = [c for c in columns if c not in taken]
        text = max(free, key=lambda c: frame[c].head(2000).str.len().mean()) if free else None
    return {**out, "text": text}


def _column(candidate: Candidate, name: str | None, role: str) -> str:
    return validate._resolve_column(candidate, name, role, required=True)


def build(
    candidate: Candidate,
    mapping: dict | None = None,
    ratios=validate.DEFAULT_RATIOS,
    seed: int = validate.DEFAULT_SEED,
    max_length: int | None = None,
    model: str = "default",
) -> validate.Prepared:
    """Check a generation candidate under a mapping (guessed where not given) and prepare its rows."""
    if candidate.frame is None:
        raise UserError(_(
            "{file_name} is a CoNLL file of tagged tokens, not text to generate. Upload a CSV, XLSX or "
            "JSON lines file with a text column, a prompt and a response column, or a messages column.",
            file_name=candidate.file_name))
    ratios = validate.normalise_ratios(ratios)
    guessed = guess_columns(candidate)
    mapping = dict(mapping or {})
    mode = mapping.get("mode")
    if not mode:  # the columns named decide the shape; otherwise the guess does
        mode = ("messages" if mapping.get("messages") else "prompt-response" if mapping.get("prompt") or
                mapping.get("response") else "text" if mapping.get("text") else guessed["mode"])
    if mode not in MODES:
        raise UserError(_("'{mode}' is not a kind of generation data. Choose one of: {modes}.", mode=mode,
                          modes=", ".join(MODES)))
    if mode == "prompt-response":
        prompt_col = _column(candidate, mapping.get("prompt") or guessed["prompt"], "prompt")
        response_col = _column(candidate, mapping.get("response") or guessed["response"], "response")
        if prompt_col == response_col:
            raise UserError(_("The prompt and the response must be two different columns."))
        used = {"prompt": prompt_col, "response": response_col}
    elif mode == "messages":
        used = {"messages": _column(candidate, mapping.get("messages") or guessed["messages"], "messages")}
    else:
        used = {"text": _column(candidate, mapping.get("text") or guessed["text"], "text")}
    split_col = mapping.get("split", guessed["split"]) if "split" in mapping else guessed["split"]
    split_col = validate._resolve_column(candidate, split_col, "split", required=False)
    frame = candidate.frame
    report = GenerationReport(
        file_name=candidate.file_name, format=candidate.format, encoding=candidate.encoding, sheet=candidate.sheet,
        task=TASK, mapping={"mode": mode, **used, "split": split_col, "sheet": candidate.sheet},
        n_input_rows=len(frame),
    )
    problem = validate._bad_rows_problem(candidate)
    if problem:
        report.problems.append(problem)

    # One (prompt, response, conversation) per row; None where the row is dropped.
    items: list[tuple[str, str | None, list | None] | None] = []
    empty_prompt, empty_response, unreadable = [], [], []
    for i in range(len(frame)):
        if mode == "messages":
            turns = parse_messages(frame.iloc[i][used["messages"]])
            if turns is None:
                unreadable.append(i)
                items.append(None)
                continue
            users = [t["content"] for t in turns[:-1] if t["role"] == "user"]
            prompt = users[-1] if users else turns[-2]["content"]
            items.append((prompt, turns[-1]["content"], turns))
        elif mode == "prompt-response":
            prompt = str(frame.iloc[i][used["prompt"]]).strip()
            response = str(frame.iloc[i][used["response"]]).strip()
            if not prompt:
                empty_prompt.append(i)
            elif not response:
                empty_response.append(i)
            else:
                items.append((prompt, response, None))
                continue
            items.append(None)
        else:
            text = str(frame.iloc[i][used["text"]]).strip()
            if not text:
                empty_prompt.append(i)
                items.append(None)
            else:
                items.append((text, None, None))
    if empty_prompt:
        report.problems.append(validate.Problem(
            code="empty_prompt", count=len(empty_prompt), action="dropped",
            message=said(N_("{n:,} row has an empty text. They will be dropped."),
                         N_("{n:,} rows have an empty text. They will be dropped."), n=len(empty_prompt))
            if mode == "text" else
            said(N_("{n:,} row has an empty prompt. They will be dropped."),
                 N_("{n:,} rows have an empty prompt. They will be dropped."), n=len(empty_prompt)),
            examples=[said(N_("row {row}"), row=i + 2) for i in empty_prompt[:validate.N_EXAMPLES]],
        ))
    if empty_response:
        report.problems.append(validate.Problem(
            code="empty_response", count=len(empty_response), action="dropped",
            message=said(N_("{n:,} row has an empty response: nothing to learn from. They will be dropped."),
                         N_("{n:,} rows have an empty response: nothing to learn from. They will be dropped."),
                         n=len(empty_response)),
            examples=[said(N_("row {row}: '{content}'"), row=i + 2, content=validate._clip(items_prompt, 60))
                      for i in empty_response[:validate.N_EXAMPLES]
                      for items_prompt in [str(frame.iloc[i][used['prompt']])]],
        ))
    if unreadable:
        report.problems.append(validate.Problem(
            code="unreadable_messages", count=len(unreadable), action="dropped",
            message=said(N_("{n:,} conversation cannot be used: each must be a list of {turn} turns (roles system, "
                            "user, assistant) ending with a non-empty assistant turn. They will be dropped."),
                         N_("{n:,} conversations cannot be used: each must be a list of {turn} turns (roles system, "
                            "user, assistant) ending with a non-empty assistant turn. They will be dropped."),
                         n=len(unreadable), turn="{role, content}"),
            examples=[said(N_("row {row}: {content}"), row=i + 2,
                           content=validate._clip(frame.iloc[i][used['messages']], 60))
                      for i in unreadable[:validate.N_EXAMPLES]],
        ))
    if mode != "text":
        same = [i for i, it in enumerate(items) if it and it[0].strip().lower() == it[1].strip().lower()]
        if same:
            report.problems.append(validate.Problem(
                code="prompt_equals_response", count=len(same), action="dropped",
                message=said(N_("{n:,} row has its response the same as the prompt: the model would learn to copy. "
                                "They will be dropped."),
                             N_("{n:,} rows have their response the same as the prompt: the model would learn to "
                                "copy. They will be dropped."), n=len(same)),
                examples=[f"'{validate._clip(items[i][0], 60)}'" for i in same[:validate.N_EXAMPLES]],
            ))
            for i in same:
                items[i] = None
    seen: dict[tuple, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it is not None:
            key = (json.dumps(it[2]) if it[2] else it[0], it[1])
            seen[key].append(i)
    dupes = [idx for idx in seen.values() if len(idx) > 1]
    if dupes:
        n_extra = sum(len(idx) - 1 for idx in dupes)
        if mode == "text":
            message = said(N_("{n:,} row repeats a text already in the file ({distinct:,} distinct). They will be "
                              "merged: each is kept once."),
                           N_("{n:,} rows repeat a text already in the file ({distinct:,} distinct). They will be "
                              "merged: each is kept once."), n=n_extra, distinct=len(dupes))
        else:
            message = said(N_("{n:,} row repeats a prompt and response pair already in the file ({distinct:,} "
                              "distinct). They will be merged: each is kept once."),
                           N_("{n:,} rows repeat a prompt and response pair already in the file ({distinct:,} "
                              "distinct). They will be merged: each is kept once."), n=n_extra, distinct=len(dupes))
        report.problems.append(validate.Problem(
            code="duplicates", count=n_extra, action="merged",
            message=message,
            examples=[f"'{validate._clip(items[idx[0]][0], 60)}' x{len(idx)}" for idx in dupes[:validate.N_EXAMPLES]],
        ))
        for idx in dupes:
            for i in idx[1:]:
                items[i] = None

    split_of_row: dict[int, str] = {}
    if split_col:
        unknown = []
        for i, it in enumerate(items):
            if it is None:
                continue
            value = validate.SPLIT_VALUES.get(str(frame.iloc[i][split_col]).strip().lower())
            if value is None:
                unknown.append(i)
                items[i] = None
            else:
                split_of_row[i] = value
        if unknown:
            report.problems.append(validate.Problem(
                code="unknown_split", count=len(unknown), action="dropped",
                message=said(N_("{n:,} row has a split that is not train, validation or test. They will be dropped."),
                             N_("{n:,} rows have a split that is not train, validation or test. They will be "
                                "dropped."), n=len(unknown)),
                examples=[said(N_("row {row}: '{content}'"), row=i + 2,
                               content=validate._clip(frame.iloc[i][split_col], 30))
                          for i in unknown[:validate.N_EXAMPLES]],
            ))
    keep = [i for i, it in enumerate(items) if it is not None]
    if not keep:
        raise UserError(_("No usable rows are left in {file_name}: every row was empty or unreadable.",
                          file_name=candidate.file_name))

    joined = [items[i][0] + ("\n" + items[i][1] if items[i][1] else "") for i in keep]
    report.length, problem, long = validate._length_check(joined, None, max_length, model)
    if problem:
        problem.said["msgid"] = N_("{n:,} prompts with their responses ({share}) are longer than the model's maximum "
                                   "of {limit} tokens. They will be kept and truncated to the first {limit} tokens "
                                   "when training.")
        problem.message = problem.message.replace("texts", "prompts with their responses", 1)
        problem.examples = [f"'{validate._clip(joined[j], 60)}'" for j in long[:validate.N_EXAMPLES]]
        report.problems.append(problem)

    if split_col:
        split_of = [split_of_row[i] for i in keep]
        description = said(N_("from the column '{column}'."), column=split_col)
        report.split = {"method": "column", "description": validate.english(description), "said": description}
    else:
        split_of, report.split = validate.assign_splits(["r"] * len(keep), ratios, seed, stratify=False)
    rows = []
    counts: dict[str, Counter] = {s: Counter() for s in validate.SPLITS}
    for row_id, (i, split) in enumerate(zip(keep, split_of), start=1):
        prompt, response, turns = items[i]
        rows.append({"row_id": row_id, "split": split, "text": prompt, "label": response, "tokens": turns, "tags": None})
        counts[split]["rows"] += 1
    report.n_rows = len(rows)
    report.labels = []
    report.counts = {s: dict(counts[s]) for s in validate.SPLITS}
    return validate.Prepared(report=report, rows=rows)
