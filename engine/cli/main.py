"""``python -m engine ...``: everything the dashboard does, headless.

Each area of the engine adds its own sub-commands in a module of its own (``engine/cli_*.py``) with a
``register(subparsers)`` function that sets ``func`` on its parsers. ``func(args)`` returns the exit status.
A :class:`engine.errors.UserError` becomes its message on stderr and status 2.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
import importlib
import sys

from engine import i18n
from engine.i18n import _
from engine.errors import UserError

# The modules that add sub-commands, in the order their commands appear in --help.
COMMAND_MODULES = [
    "engine.cli.dataset",
    "engine.cli.train",
    "engine.cli.jobs",
    "engine.cli.report",
    "engine.cli.generate",
    "engine.cli.review",
    "engine.cli.feed",
    "engine.cli.models",
    "engine.cli.access",
    "engine.cli.notify",
    "engine.cli.job",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: status 2, one plain line, as ours
        self.print_usage(sys.stderr)
        self.exit(2, _("error: {message}", message=message) + "\n")


# argparse's own words (usage:, options, show this help message and exit, its errors) come from gettext's default
# domain at the moment they are written; this sends them through the catalogue, in the language of the call.
argparse._ = lambda text: _(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description=_("Bellwether engine: fine-tuning and sentiment monitoring."))
    parser.add_argument("--lang", help=_("the language of messages: en or zh_CN (简体中文); default BELLWETHER_LANGUAGE"))
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def _language_asked(argv: list[str]) -> str | None:
    """``--lang X`` / ``--lang=X`` anywhere before the command's own arguments, read before the parser is built so that
    --help and argparse's own errors speak it too."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``--lang`` holds for this call only (an in-process caller keeps its own language after)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        asked = i18n.check_language(_language_asked(argv)) if _language_asked(argv) else None
    except UserError as exc:
        print(_("error: {message}", message=exc), file=sys.stderr)
        return 2
    with i18n.using(asked) if asked else nullcontext():
        return _run(argv)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(_("error: {message}", message=exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
