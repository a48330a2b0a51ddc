"""The interface's languages: one translation catalogue (gettext, through Babel) and locale-aware numbers and times.

Every visible sentence is written in English in the code, wrapped in ``_()``::

    from engine.i18n import _
    st.header(_("Saved datasets"))
    raise UserError(_("{name} has no rows.", name=file_name))

``_`` looks the English text up in the catalogue of the current language (``engine/locale/<lang>/LC_MESSAGES/
bellwether.po``, read with Babel) and fills in the ``{placeholders}`` after translating, so a translation can put
them where its grammar wants them. A text missing from a catalogue shows in English; tests/test_i18n.py fails when a
wrapped text has no translation.

The current language is per context (a dashboard session's script run, a CLI call): the dashboard sets it from the
signed-in person's choice (kept with their name in the store, ``engine.access.users.language``), the CLI from
``--lang`` or ``BELLWETHER_LANGUAGE``; English otherwise.

Sentences kept in the store (a source's ``last_error``, a job's ``error``, a delivery's error) are written in English
whatever the writer's language, and put into the reader's language when shown, by :func:`shown`: the one way to do it.
(A validation report keeps its sentences as msgid + values instead: engine.data.wording.)
"""

from __future__ import annotations

import io
import re
import string
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from engine import settings
from engine.errors import UserError

LANGUAGES = {"en": "English", "zh_CN": "简体中文"}
DEFAULT = "en"
DOMAIN = "bellwether"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_current: ContextVar[str | None] = ContextVar("bellwether_language", default=None)


def check_language(code: str | None) -> str:
    code = (code or "").strip().replace("-", "_")
    for known in LANGUAGES:
        if code.lower() == known.lower() or code.lower() == known.split("_")[0].lower():
            return known
    raise UserError(_("Bellwether speaks {languages}; '{code}' is not one of them.",
                      languages=", ".join(f"{k} ({v})" for k, v in LANGUAGES.items()), code=code))


def language() -> str:
    """The language of this context: set by :func:`use`, else BELLWETHER_LANGUAGE, else English."""
    chosen = _current.get() or settings.language()
    return chosen if chosen in LANGUAGES else DEFAULT


def use(code: str | None) -> None:
    """Speak ``code`` from now on in this context (None: back to the default)."""
    _current.set(check_language(code) if code else None)


@contextmanager
def using(code: str | None) -> Iterator[None]:
    token = _current.set(check_language(code) if code else None)
    try:
        yield
    finally:
        _current.reset(token)


def catalogue_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=None)
def _translations(code: str):
    """The language's catalogue, compiled in memory from its .po file (no compiled .mo file to keep in step)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import NullTranslations, Translations

    path = catalogue_path(code)
    if code == DEFAULT or not path.exists():
        return NullTranslations()
    with open(path, "rb") as handle:
        catalog = read_po(handle, locale=code, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def _(message: str, /, **values) -> str:
    """``message`` in the current language, its ``{placeholders}`` filled from ``values``."""
    text = _translations(language()).gettext(message)
    return text.format(**values) if values else text


def shown(stored: str | None) -> str:
    """A sentence kept in the store in English (a source's ``last_error``, a job's ``error``, a delivery's error) in
    the current language.

    Whoever writes such a sentence writes it in English (so the store and the command line's JSON read the same for
    everyone, whatever the writer's language); it is put into the reader's language here, when shown: a sentence that
    is a msgid is translated; else it is matched against the catalogue's texts with {placeholders}, the values read
    back from it (each shown the same way: a sentence may hold another, "{error} (try 1 of 6; retrying)") and the
    translation filled with them. A sentence the catalogue does not hold is shown as it is. None: ""."""
    text = (stored or "").strip()
    if not text or language() == DEFAULT:
        return text
    translated = _(text)
    if translated != text:
        return translated
    for pattern, message, literal in _stored_patterns(language()):
        if literal > len(text):
            continue
        found = pattern.fullmatch(text)
        if found:
            return _(message, **{name: shown(value) for name, value in found.groupdict().items()})
    return text


@lru_cache(maxsize=None)
def _stored_patterns(code: str) -> list[tuple[re.Pattern, str, int]]:
    """(regex, msgid, length of its words) for each catalogue text with plain {placeholders}, the most specific (most
    words) first; texts with under 12 characters of words ("{job} {status}: {reason}") would match too much."""
    from babel.messages.pofile import read_po

    path = catalogue_path(code)
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        ids = [m.id for m in read_po(handle) if m.id and isinstance(m.id, str) and "{" in m.id]
    found = []
    for message in ids:
        parts, seen, literal, plain = [], set(), 0, True
        try:
            pieces = list(string.Formatter().parse(message))
        except ValueError:
            continue
        for text, name, spec, conversion in pieces:
            parts.append(re.escape(text))
            literal += len(text)
            if name is None:
                continue
            if not name.isidentifier() or spec or conversion:
                plain = False
                break
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
        if plain and seen and literal >= 12:
            found.append((re.compile("".join(parts), re.DOTALL), message, literal))
    found.sort(key=lambda item: -item[2])
    return found


def N_(message: str, /) -> str:
    """Marks ``message`` for the catalogue without translating it now: for texts kept in module-level constants, which
    are built once at import, before anyone's language is known. Translate them where they are shown: ``_(CONSTANT)``."""
    return message


def n_(singular: str, plural: str, n: int, /, **values) -> str:
    """The singular or plural form for ``n`` (``{n}`` is filled in too)."""
    text = _translations(language()).ngettext(singular, plural, n)
    return text.format(n=n, **values)


def number(value, digits: int = 0) -> str:
    """A number as the current language writes it (grouping, decimal sign)."""
    from babel.numbers import format_decimal

    if value is None:
        return ""
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=language())


def percent(value, digits: int = 0) -> str:
    from babel.numbers import format_percent

    if value is None:
        return ""
    return format_percent(value, format="#,##0" + ("." + "0" * digits if digits else "") + "%", locale=language())


def when(value: datetime | str | None, tz: str | None = None) -> str:
    """A moment as the current language writes a date and time, in the time zone ``tz`` (a feed's zone) when given."""
    from babel.dates import format_datetime

    if value in (None, ""):
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if tz:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(tz))
    return format_datetime(moment, format="medium", tzinfo=moment.tzinfo, locale=language())
