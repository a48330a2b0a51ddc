"""What a person reads on the dashboard, in either language: labels and sentences looked up through the interface's
own catalogue (engine.i18n), and the English left on a screen that should be in another language.

Used by the usability walk (bench/usability.py) and the browser journey (tests/test_journey.py), so that one piece of
code drives the dashboard in English and in 简体中文: it names a button by the English text the page code writes
(``_("Accept & save")``) and finds what the page shows in the language it speaks.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

from engine import i18n

# Names that are the same in every language: the product, file formats, measures, Streamlit's own words.
ALLOWED_ENGLISH = frozenset({
    "Bellwether", "CSV", "XLSX", "JSONL", "TSV", "RSS", "Atom", "F1", "BIO", "CPU", "GPU", "CUDA", "ROUGE", "BLEU",
    "LoRA", "JSON", "URL", "UTC", "SSO", "OIDC", "ID", "Python", "torch", "transformers", "peft", "fp32", "bf16",
    "bfloat16", "float32", "cpu", "cuda", "Plotly", "Streamlit",
})


def _skeleton(text: str) -> str:
    """The text with every {placeholder} (its name and format spec) written as {}."""
    return "".join(literal.replace("{", "{{").replace("}", "}}") + ("{}" if field is not None else "")
                   for literal, field, _spec, _conv in string.Formatter().parse(text))


def _fields(text: str) -> list[str]:
    seen: list[str] = []
    for _literal, field, _spec, _conv in string.Formatter().parse(text):
        if field is not None and field not in seen:
            seen.append(field)
    return seen


@lru_cache(maxsize=None)
def catalogue(code: str) -> dict[str, str]:
    """msgid -> translation of the language's catalogue ({} for English, or a language with none)."""
    path = i18n.catalogue_path(code)
    if code == i18n.DEFAULT or not path.exists():
        return {}
    from babel.messages.pofile import read_po

    found: dict[str, str] = {}
    with open(path, "rb") as handle:
        for message in read_po(handle):
            ids = message.id if isinstance(message.id, (list, tuple)) else [message.id]
            strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
            for msgid in ids:
                if msgid and strings and strings[0]:
                    found[msgid] = strings[0]
    return found


class Words:
    """The dashboard's texts in ``lang``.

    ``words("Upload")`` is ``_("Upload")`` in that language. ``words.pattern(template, **values)`` is a regular
    expression for a sentence with {placeholders} as the page shows it: the template is the English the page code
    writes (markdown marks ** and ` left out, as the page shows it); each placeholder becomes the value given (a
    string, matched as written, or a compiled pattern) or any text. A template's placeholder names need not be those
    of the page code's msgid: the msgid is found by its words alone. Every text that had no translation is kept in
    ``missing`` (a failing test prints it)."""

    def __init__(self, lang: str):
        self.lang = i18n.check_language(lang)
        self.missing: list[str] = []

    def translation(self, template: str) -> tuple[str, str] | None:
        """(msgid, translation) for the English ``template``, or None when the catalogue has no such text."""
        found = catalogue(self.lang)
        if template in found:
            return template, found[template]
        shape = _skeleton(template)
        if "{}" in shape:
            for msgid, text in found.items():
                if "{" in msgid and _skeleton(msgid) == shape:
                    return msgid, text
        return None

    def __call__(self, text: str) -> str:
        if self.lang == i18n.DEFAULT:
            return text
        hit = self.translation(text)
        if hit is None:
            if text not in self.missing:
                self.missing.append(text)
            return text
        return hit[1]

    def pattern(self, template: str, **values) -> re.Pattern:
        mine = _fields(template)
        msgid, shown = (template, template) if self.lang == i18n.DEFAULT else (self.translation(template) or (None, None))
        if msgid is None:
            if template not in self.missing:
                self.missing.append(template)
            msgid, shown = template, template
        theirs = dict(zip(_fields(msgid), mine))  # the msgid's names -> the template's, in the English order
        return sentence_pattern(shown, **{name: values.get(mine_name) for name, mine_name in theirs.items()})

    def any_of(self, *texts: str) -> re.Pattern:
        return re.compile("|".join(re.escape(self(t)) for t in texts))


def sentence_pattern(shown: str, **values) -> re.Pattern:
    """A regular expression for the sentence ``shown`` (already in the page's language) as the page shows it: markdown
    marks ** and ` left out; each {placeholder} the value given (a string, matched as written, or a compiled pattern),
    or any text."""
    parts = []
    for literal, field, _spec, _conv in string.Formatter().parse(shown):
        parts.append(re.escape(literal.replace("**", "").replace("`", "")))
        if field is not None:
            value = values.get(field)
            if value is None:
                parts.append(".+?")
            elif isinstance(value, re.Pattern):
                parts.append(f"(?:{value.pattern})")
            elif isinstance(value, int) or str(value).isdigit():
                parts.append(rf"(?<!\d){re.escape(str(value))}(?!\d)")  # 0 is not the end of 10
            else:
                parts.append(re.escape(str(value)))
    return re.compile("".join(parts))


# The visible text of the page's main area, one string per block (a paragraph, a label, a button, a heading), leaving
# out what is not the dashboard's own words: data grids and code, the file chosen, Streamlit's upload box (its own
# English), icons (drawn from ligature names) and whatever is hidden.
VISIBLE_TEXT_JS = """() => {
    const main = document.querySelector("[data-testid='stMain']") || document.body;
    const skip = "[data-testid='stDataFrame'], [data-testid='stTable'], [data-testid='stCode'], code, pre,"
        + " [data-testid='stFileUploaderDropzone'], [data-testid='stFileUploaderFile'], [data-testid='stIconMaterial'],"
        + " [data-testid='stToolbar'], style, script, noscript, [aria-hidden='true']";
    const blocks = new Map();
    const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const parent = node.parentElement;
        if (!parent || !node.textContent.trim() || parent.closest(skip)) continue;
        if (parent.checkVisibility && !parent.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
        const block = parent.closest("p, li, h1, h2, h3, h4, h5, h6, label, button, summary, td, th, a, "
            + "[data-testid='stMetricLabel'], [data-testid='stMetricValue'], [data-testid='stMetricDelta'], "
            + "[data-testid='stCaptionContainer'], [role='tab'], [role='option']") || parent;
        blocks.set(block, (blocks.get(block) || "") + node.textContent);
    }
    return Array.from(blocks.values()).map(t => t.replace(/\\s+/g, " ").trim()).filter(Boolean);
}"""

_WORD = re.compile(r"[(\"'“‘«]*([A-Za-z][a-z]+(?:['’-][A-Za-z]+)*|[A-Z]{2,}|[aAI])[)\"'”’».,:;!?…]*")
_LETTERS = re.compile(r"[a-z]+(?:['’-][a-z]+)*")


def _plain(text: str) -> str:
    return " " + " ".join(_LETTERS.findall(text.lower())) + " "


def english_runs(blocks: list[str], data: str = "", allowed=ALLOWED_ENGLISH) -> list[str]:
    """Runs of two or more English words in ``blocks`` (texts a person reads) that are neither names in ``allowed``
    nor text from the data (``data``: every data text and name the screen may show, in one string)."""
    data = _plain(data)
    found: list[str] = []
    for block in blocks:
        run: list[str] = []
        for token in [*block.split(), ""]:
            match = _WORD.fullmatch(token)
            if match and match.group(1) not in allowed:
                run.append(token)
                continue
            if len(run) >= 2:
                text = " ".join(run)
                if _plain(text) not in data and text not in found:
                    found.append(text)
            run = []
    return found


def english_left(page, data: str = "", allowed=ALLOWED_ENGLISH) -> list[str]:
    """The English sentences (2+ words) left in what the page's main area shows; see :func:`english_runs`."""
    return english_runs(page.evaluate(VISIBLE_TEXT_JS), data, allowed)
