"""The interface's second language (简体中文) through one catalogue (engine/i18n.py, engine/locale/).

- Every text wrapped in ``_()`` anywhere in engine/, views/ and streamlit_app.py has a Chinese translation, and the
  translation keeps exactly the ``{placeholders}`` of the English.
- A person's choice is kept with their name and the dashboard speaks it (sign-in, navigation, sidebar); numbers and
  times are written the language's way, times in the feed's zone.
"""

from __future__ import annotations

import ast
import re
import string

import pytest

from engine import i18n
from engine.i18n import _
from tests.conftest import ROOT


def _wrapped_texts() -> dict[str, str]:
    """msgid -> where, for every _("...") / n_("...", "...") call with literal text."""
    found: dict[str, str] = {}
    files = [*(ROOT / "engine").rglob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "streamlit_app.py"]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "n_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                for arg in node.args[: 2 if node.func.id == "n_" else 1]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found.setdefault(arg.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _catalogue(code: str) -> dict[str, str]:
    from babel.messages.pofile import read_po

    with open(i18n.catalogue_path(code), "rb") as handle:
        return {m.id: m.string for m in read_po(handle) if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_wrapped_text_has_a_chinese_translation_with_the_same_placeholders():
    wrapped, chinese = _wrapped_texts(), _catalogue("zh_CN")
    assert len(wrapped) > 20  # the walk found the interface's texts
    missing = {text: where for text, where in wrapped.items() if not chinese.get(text)}
    assert not missing, f"{len(missing)} texts have no 简体中文 translation in engine/locale/zh_CN: {missing}"
    broken = {t: chinese[t] for t in wrapped if _fields(t) != _fields(chinese[t])}
    assert not broken, f"translations whose placeholders differ from the English: {broken}"
    assert all(re.search(r"[\u4e00-\u9fff]", chinese[t]) or not re.search("[A-Za-z]{3}", t) for t in wrapped)


def test_the_catalogue_holds_each_text_once():
    from babel.messages.pofile import read_po

    path = i18n.catalogue_path("zh_CN")
    entries = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("msgid "))
    with open(path, "rb") as handle:
        distinct = len([m for m in read_po(handle) if m.id])
    assert entries - 1 == distinct, f"{entries - 1 - distinct} texts appear twice in {path.name} (one would be lost)"
    keys = [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith(("msgid ", "msgstr "))]
    unpaired = [i for i in range(0, len(keys) - 1, 2) if keys[i:i + 2] != ["msgid", "msgstr"]]
    assert not unpaired and len(keys) % 2 == 0, "an entry without its msgstr (a merge mixed two entries up)"


def test_the_language_follows_the_context_and_numbers_and_times_follow_it():
    assert _("Data") == "Data"
    with i18n.using("zh-CN"):
        assert _("Data") == "数据"
        assert _("Signed in as **{name}** ({role})", name="ann", role=_("analyst")) == "已登录：**ann**（分析师）"
        assert i18n.when("2026-12-01T09:30:00+00:00", "Asia/Shanghai") == "2026年12月1日 17:30:00"
        assert i18n.percent(0.482) == "48%"
    assert i18n.when("2026-12-01T09:30:00+00:00", "America/New_York") .replace("\u202f", " ") == "Dec 1, 2026, 4:30:00 AM"
    assert i18n.number(1234567.5, 1) == "1,234,567.5"
    # A placeholder may be called {message}: the text itself is passed by position only.
    assert _("error: {message}", message="disk full") == "error: disk full"
    from engine.errors import UserError

    with pytest.raises(UserError, match="'fr' is not one of them"):
        i18n.check_language("fr")


def test_a_persons_choice_is_kept_and_the_dashboard_speaks_it(home, monkeypatch):
    from engine import db
    from engine.access import users
    from engine.cli.main import main
    from tests.helpers import open_page, texts

    monkeypatch.setenv("BELLWETHER_USER", "ann")
    assert main(["users", "language", "ann", "zh_CN"]) == 0
    assert users.language(db.connect(), "ann") == "zh_CN"
    at = open_page("data")  # local mode: ann is the local administrator
    assert "本机模式：尚无账户" in texts(at)
    assert [s for s in at.sidebar.selectbox if s.label == "语言"][0].value == "zh_CN"
    [choice] = [s for s in at.sidebar.selectbox if s.label == "语言"]
    choice.set_value("en").run()
    assert users.language(db.connect(), "ann") == "en"
    assert "Local mode: no accounts yet" in texts(at) and "本机模式" not in texts(at)


# --- Visible texts that never reach the catalogue -------------------------------------------------------------------
# A text shown to a person is written inside _() (or N_() for a module-level constant). The walk below finds literal
# English handed straight to what shows it: Streamlit calls in the pages, chart titles and axis labels, the messages
# of UserError anywhere in the engine, and what the command line prints or puts in --help.

# Streamlit's calls whose first argument (or label/help/placeholder/caption/title keyword) a person reads.
_SHOWN_BY = {
    "title", "header", "subheader", "caption", "markdown", "write", "text", "info", "warning", "error", "success",
    "toast", "exception", "button", "download_button", "link_button", "page_link", "form_submit_button", "checkbox",
    "toggle", "radio", "selectbox", "multiselect", "select_slider", "slider", "number_input", "text_input",
    "text_area", "date_input", "time_input", "file_uploader", "color_picker", "expander", "popover", "tabs",
    "spinner", "status", "metric", "dialog", "TextColumn", "NumberColumn", "ProgressColumn", "LinkColumn",
    "DatetimeColumn", "DateColumn", "CheckboxColumn", "SelectboxColumn", "ListColumn", "BarChartColumn",
    "LineChartColumn", "Column", "chat_input", "feedback", "pills", "segmented_control", "badge", "set_page_config",
}
_SHOWN_KEYWORDS = {"label", "help", "placeholder", "caption", "title", "page_title", "xaxis_title", "yaxis_title",
                   "legend_title_text", "description", "message", "body", "text"}
_WORDS = re.compile(r"[A-Za-z]{2,}")
_NOT_WORDS = re.compile(r":material/[a-z_]+:|\{[^}]*\}|https?://\S+|`[^`]*`")


_NAMES = {"Bellwether"}  # the product's name reads the same in every language


def _reads_as_words(node) -> bool:
    """A literal (or an f-string's literal parts) with at least one English word in it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in _NAMES:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    else:
        return False
    return any(_WORDS.search(_NOT_WORDS.sub(" ", part)) for part in parts)


def _untranslated(path, kind: str) -> list[str]:
    """'file:line text' for each literal English text that reaches a person unwrapped in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def flag(node, arg):
        if _reads_as_words(arg):
            text = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(f"{where}:{node.lineno} {text[:70]!r}")

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("_", "n_", "N_"):
            continue
        if name == "UserError" or (kind == "cli" and name in ("print", "add_parser", "add_argument", "_Parser",
                                                                  "ArgumentParser", "add_subparsers", "exit")):
            for arg in node.args[:1] if name not in ("add_argument", "add_parser") else []:
                flag(node, arg)
            for kw in node.keywords:
                if kw.arg in ("help", "description", "epilog", "message", "title"):
                    flag(node, kw.value)
            continue
        if kind == "page":
            if name in _SHOWN_BY and node.args:
                flag(node, node.args[0])
            for kw in node.keywords:
                if kw.arg in _SHOWN_KEYWORDS:
                    flag(node, kw.value)
                if kw.arg == "labels" and isinstance(kw.value, ast.Dict):  # plotly's axis and legend names
                    for value in kw.value.values:
                        flag(node, value)
    return found


def _interface_files():
    yield from ((p, "page") for p in sorted((ROOT / "views").glob("*.py")))
    yield ROOT / "streamlit_app.py", "page"
    for p in sorted((ROOT / "engine").rglob("*.py")):
        yield p, "cli" if p.parent.name == "cli" else "engine"


# Files not yet through the catalogue. The list only shrinks: a file listed here that has nothing left to translate
# fails too, so whoever finishes one takes it off.
NOT_YET_TRANSLATED: set[str] = set()


def test_no_visible_english_literal_bypasses_the_catalogue():
    left, done_but_listed = {}, []
    for path, kind in _interface_files():
        name = str(path.relative_to(ROOT))
        found = _untranslated(path, kind)
        if name in NOT_YET_TRANSLATED:
            if not found:
                done_but_listed.append(name)
        elif found:
            left[name] = found
    assert not left, "texts shown without _(): " + "\n".join(x for v in left.values() for x in v)
    assert not done_but_listed, f"take these off NOT_YET_TRANSLATED, they are translated now: {done_but_listed}"


def test_the_walk_finds_an_untranslated_text(tmp_path):
    page = tmp_path / "probe.py"
    page.write_text('import streamlit as st\nst.button("Delete run", help=_("ok"))\nst.caption(f"{n} rows left")\n'
                    'st.markdown(_("Fine"))\nst.divider()\nst.write(":material/check:")\n')
    found = _untranslated(page, "page")
    assert len(found) == 2 and "Delete run" in found[0] and "rows left" in found[1]
    cli = tmp_path / "cli.py"
    cli.write_text('print(f"Deleted {n} runs")\nprint(_("Done"))\np.add_argument("--x", help="the thing")\n'
                   'raise UserError(_("No {x}", x=1))\nprint(json.dumps(rows))\n')
    assert len(_untranslated(cli, "cli")) == 2
