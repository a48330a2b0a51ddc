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
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "n_")
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


def test_the_language_follows_the_context_and_numbers_and_times_follow_it():
    assert _("Data") == "Data"
    with i18n.using("zh-CN"):
        assert _("Data") == "数据"
        assert _("Signed in as **{name}** ({role})", name="ann", role=_("analyst")) == "已登录：**ann**（分析师）"
        assert i18n.when("2026-12-01T09:30:00+00:00", "Asia/Shanghai") == "2026年12月1日 17:30:00"
        assert i18n.percent(0.482) == "48%"
    assert i18n.when("2026-12-01T09:30:00+00:00", "America/New_York") .replace("\u202f", " ") == "Dec 1, 2026, 4:30:00 AM"
    assert i18n.number(1234567.5, 1) == "1,234,567.5"
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
