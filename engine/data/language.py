"""The main language of a set of texts (a dataset, a feed), told without a model or a download.

No small, well-kept language detector is installed with Bellwether, so this counts scripts and, for the Latin script,
common function words:

- each text's letters are counted by script (Han, kana, Hangul, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai,
  Latin); the script with most letters is the text's script. Han with kana is Japanese, Han alone Chinese, Hangul
  Korean, Cyrillic Russian (the commonest), and so on: one language per script, except Latin;
- Latin-script texts are told apart by their function words ("the", "und", "les", "los", ...) summed over all of them,
  for English, German, French, Spanish, Italian, Dutch and Portuguese. With no function word at all (a few very short
  headlines) the language is 'latin': a Latin-script language that cannot be told, and nothing is warned about it.

:func:`detect` returns the commonest language with its share of the texts looked at (up to ``SAMPLE``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from engine.data.wording import said, shown
from engine.i18n import N_, _, number, percent
from engine.models import catalog, coverage

SAMPLE = 500  # texts looked at (spread over the whole set)
LATIN = "latin"  # a Latin-script language that could not be told
NAMES = {
    "en": N_("English"), "de": N_("German"), "fr": N_("French"), "es": N_("Spanish"), "it": N_("Italian"),
    "nl": N_("Dutch"), "pt": N_("Portuguese"), "zh": N_("Chinese"), "ja": N_("Japanese"), "ko": N_("Korean"),
    "ru": N_("Russian"), "el": N_("Greek"), "ar": N_("Arabic"), "he": N_("Hebrew"), "hi": N_("Hindi"),
    "th": N_("Thai"), LATIN: N_("a Latin-script language"),
}
# One language per script (the commonest writer of it), except Latin (function words) and Han (kana says Japanese).
SCRIPT_LANGUAGE = {"hangul": "ko", "cyrillic": "ru", "greek": "el", "arabic": "ar", "hebrew": "he",
                   "devanagari": "hi", "thai": "th"}
FUNCTION_WORDS = {
    "en": "the and of to in is for on with that by as at from its was are has be will said it this an".split(),
    "de": "der die und das ist nicht mit den von zu auf für im des ein eine sich dem auch wird".split(),
    "fr": "le la les et des est du une un pour dans que qui sur au pas par avec ce aux".split(),
    "es": "el la los las de y que en un una por con para es del se al su lo como".split(),
    "it": "il la di e che per un una del della non sono con le gli è nel alla dei".split(),
    "nl": "de het een en van is dat op te met voor niet zijn aan bij ook wordt".split(),
    "pt": "o a os as de e que em um uma para com não do da por é no na dos".split(),
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _script(ch: str) -> str | None:
    code = ord(ch)
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FA1F:
        return "han"
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:
        return "kana"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for script, word in (("latin", "LATIN"), ("cyrillic", "CYRILLIC"), ("greek", "GREEK"), ("arabic", "ARABIC"),
                         ("hebrew", "HEBREW"), ("devanagari", "DEVANAGARI"), ("thai", "THAI")):
        if name.startswith(word):
            return script
    return None


def _text_script(text: str) -> str | None:
    counts = Counter(s for s in map(_script, text) if s)
    if not counts:
        return None
    if counts["han"] or counts["kana"]:
        cjk = counts["han"] + counts["kana"]
        if cjk >= 0.3 * sum(counts.values()):  # a Chinese post quoting a ticker is still Chinese
            return "ja" if counts["kana"] >= 0.1 * cjk else "zh"
    return counts.most_common(1)[0][0]


def _latin_language(texts: list[str]) -> str:
    hits: Counter = Counter()
    sets = {lang: set(words) for lang, words in FUNCTION_WORDS.items()}
    for text in texts:
        for word in _WORD.findall(text.lower()):
            for lang, words in sets.items():
                if word in words:
                    hits[lang] += 1
    if not hits:
        return LATIN
    return hits.most_common(1)[0][0]


def detect(texts) -> dict:
    """{'language': code, 'name': plain name, 'share': share of the texts looked at in it, 'n': texts looked at}; the
    language is None when no text has letters."""
    texts = coverage.spread(texts, SAMPLE)  # spread over the whole set, not just its start
    by_text = [(t, _text_script(t)) for t in texts]
    latin = [t for t, s in by_text if s == "latin"]
    latin_language = _latin_language(latin) if latin else LATIN
    languages = Counter()
    for _skip, script in by_text:
        if script is None:
            continue
        languages[latin_language if script == "latin" else SCRIPT_LANGUAGE.get(script, script)] += 1
    if not languages:
        return {"language": None, "name": "unknown", "share": 0.0, "n": len(texts)}
    code, count = languages.most_common(1)[0]
    return {"language": code, "name": NAMES.get(code, code), "share": count / max(1, sum(languages.values())),
            "n": len(texts)}


def name(code: str | None) -> str:
    """The language's name in the reader's language."""
    return _(NAMES[code]) if code in NAMES else (code or _("unknown"))


def _name_said(code: str | None):
    """The language's name as kept in a said sentence (translated when shown)."""
    return said(NAMES[code]) if code in NAMES else (code or said(N_("unknown")))


def describe(found: dict | None) -> str:
    """'Chinese (97% of 500 texts looked at)' - how a detection is shown, in the reader's language."""
    if not found or not found.get("language"):
        return _("unknown (no text with letters)")
    return _("{language} ({share} of {n} texts looked at)", language=name(found["language"]),
             share=percent(found["share"]), n=number(found["n"]))


def covers(spec: str | None, code: str | None) -> bool | None:
    """Whether base model ``spec`` covers language ``code``: True, False, or None when it cannot be told (a model
    Bellwether does not know, or a text language it could not tell)."""
    if not code or code == LATIN:
        return None
    known = catalog.languages_of(spec)
    if known is None:
        return None
    return catalog.MULTILINGUAL in known or code in known


def models_for(code: str | None) -> list:
    """The curated base models that cover ``code`` (its own language first, then the multilingual ones)."""
    own = [s for s in catalog.SUGGESTIONS if code in s.languages]
    return own + [s for s in catalog.SUGGESTIONS if catalog.MULTILINGUAL in s.languages]


def model_warning_said(spec: str | None, found: dict | None) -> dict | None:
    """A plain warning when the texts' main language is one base model ``spec`` was not trained on, else None: a
    said sentence (engine.data.wording), to keep with a report and show in the reader's language."""
    code = (found or {}).get("language")
    if covers(spec, code) is not False:
        return None
    known = catalog.languages_of(spec) or ()
    with_names = {f"l{i}": _name_said(c) for i, c in enumerate(known)}
    trained = said(", ".join("{" + key + "}" for key in with_names), **with_names)
    spec = (spec or catalog.DEFAULT).strip()
    options = ", ".join(s.id for s in models_for(code)[:3])
    values = dict(language=_name_said(code), share=f"{found['share']:.0%}", trained=trained, options=options)
    if spec == catalog.DEFAULT:
        return said(N_("The texts are mostly {language} ({share} of those looked at), but the default model "
                       "(all-MiniLM-L6-v2) was trained on {trained} only: expect poor results. Choose a base model "
                       "that covers {language}, such as {options}."), **values)
    return said(N_("The texts are mostly {language} ({share} of those looked at), but the base model {spec} was "
                   "trained on {trained} only: expect poor results. Choose a base model that covers {language}, such "
                   "as {options}."), spec=spec, **values)


def model_warning(spec: str | None, found: dict | None) -> str | None:
    """:func:`model_warning_said` in the reader's language."""
    warning = model_warning_said(spec, found)
    return shown(warning) if warning else None


def vocabulary_warning(spec: str | None, texts) -> str | None:
    """A plain warning, in the reader's language, when base model ``spec``'s vocabulary has no token for a large share
    of ``texts``' words (engine.models.coverage: at or above its THRESHOLD), else None. Works for any base model whose
    tokenizer is on this machine, including those :func:`covers` cannot tell about."""
    share = coverage.unknown_share(spec, texts)
    if not coverage.is_blind(share):
        return None
    spec = (spec or catalog.DEFAULT).strip()
    if spec == catalog.DEFAULT:
        return _("The default model (all-MiniLM-L6-v2) does not know {share} of the words in these texts (its "
                 "vocabulary has no token for them), so it cannot learn from them: expect poor results. Choose a base "
                 "model whose vocabulary covers these texts' language.", share=percent(share))
    return _("Base model {spec} does not know {share} of the words in these texts (its vocabulary has no token for "
             "them), so it cannot learn from them: expect poor results. Choose a base model whose vocabulary covers "
             "these texts' language.", spec=spec, share=percent(share))
