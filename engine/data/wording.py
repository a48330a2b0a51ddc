"""Sentences that are kept (in a validation report saved with a dataset) and shown later, in the reader's language.

A report's problems and notes are built as ``said(N_("English {n}"), n=...)``: the English msgid and its values,
stored as they are (JSON), and turned into words only when shown, by :func:`shown`, in the language of whoever reads
them. Plural forms are two whole msgids (``plural=``), picked by ``n`` the English way; Chinese has one form for both.
A value may itself be a said sentence (a reason inside a message); it is shown in the same language.
"""

from __future__ import annotations

from engine.i18n import _, using


def said(msgid: str, plural: str | None = None, **values) -> dict:
    """A sentence to show later: its English msgid (marked with N_() where written) and its values."""
    out: dict = {"msgid": msgid, "values": values}
    if plural is not None:
        out["plural"] = plural
    return out


def shown(message) -> str:
    """``message`` in the current language: a said sentence, a stored English msgid, or text from before."""
    if isinstance(message, dict) and "msgid" in message:
        values = {key: shown(value) if isinstance(value, dict) else value
                  for key, value in (message.get("values") or {}).items()}
        msgid = message["msgid"]
        if message.get("plural") is not None and values.get("n") != 1:
            msgid = message["plural"]
        return _(msgid, **values)
    if isinstance(message, str):
        return _(message) if message else message
    return "" if message is None else str(message)


def english(message) -> str:
    """``message`` in English, whatever the current language (what is kept as plain text next to the said form)."""
    with using("en"):
        return shown(message)
