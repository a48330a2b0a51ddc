"""Sentences that are kept (in a validation report saved with a dataset) and shown later, in the reader's language.

A report's problems and notes are built as ``said(N_("English {n}"), n=...)``: the English msgid and its values,
stored as they are (JSON), and turned into words only when shown, by :func:`shown`, in the language of whoever reads
them. Plural forms are two whole msgids (``plural=``), picked by ``n`` the English way; Chinese has one form for both.
A value may itself be a said sentence (a reason inside a message); it is shown in the same language.

This keeps what the sentence was made of, so nothing has to be read back: better than the plain English sentences
other stores keep (a job's error, a source's last error), which engine.i18n.shown reads back against the catalogue.
A plain string here (a report saved before said forms) goes through that same function.
"""

from __future__ import annotations

from engine import i18n
from engine.i18n import _, using


def said(msgid: str, plural: str | None = None, **values) -> dict:
    """A sentence to show later: its English msgid (marked with N_() where written) and its values."""
    out: dict = {"msgid": msgid, "values": values}
    if plural is not None:
        out["plural"] = plural
    return out


def shown(message) -> str:
    """``message`` in the current language: a said sentence, or a stored English sentence (engine.i18n.shown)."""
    if isinstance(message, dict) and "msgid" in message:
        values = {key: shown(value) if isinstance(value, dict) else value
                  for key, value in (message.get("values") or {}).items()}
        msgid = message["msgid"]
        if message.get("plural") is not None and values.get("n") != 1:
            msgid = message["plural"]
        return _(msgid, **values)
    if isinstance(message, str):
        return i18n.shown(message)
    return "" if message is None else str(message)


def english(message) -> str:
    """``message`` in English, whatever the current language (what is kept as plain text next to the said form)."""
    with using("en"):
        return shown(message)
