"""The 简体中文 catalogue file itself is well formed (issue 14).

Every branch appends its entries at the end of engine/locale/zh_CN/LC_MESSAGES/bellwether.po and git merges the file
by union (.gitattributes), which can interleave two blocks' lines: an entry may lose its msgstr. Babel then reads the
rest but prints a warning to standard output, which in a guarded child process (engine/data/guarded.py answers on
standard output) turns a Chinese-speaking import into "failed in its child process" with no reason. This test names
the broken line instead.
"""

from __future__ import annotations

from engine import i18n


def test_the_chinese_catalogue_reads_without_a_single_malformed_entry():
    from babel.messages.pofile import PoFileError, read_po

    path = i18n.catalogue_path("zh_CN")
    try:
        with open(path, "rb") as handle:
            catalog = read_po(handle, abort_invalid=True)
    except PoFileError as exc:
        raise AssertionError(f"{path.name} is malformed (a union merge may have split an entry): {exc}") from None
    assert len([m for m in catalog if m.id]) > 20
