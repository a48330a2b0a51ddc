"""``python -m engine models list|allow|disallow``: the base models the dashboard may use (the allow-list).

The dashboard's Train page accepts ``default`` and what is on this list only; the CLI runs as the operator and may
name any folder. Hub ids are downloaded into the data directory only with ``BELLWETHER_ALLOW_DOWNLOADS=1``.
"""

from __future__ import annotations

from engine.i18n import _
from engine.models import catalog


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help=_("list, allow and disallow the base models the dashboard may use"))
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    p = sub.add_parser("list", help=_("the allowed base models ('default' is always allowed)"))
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("allow", help=_("allow a hub id (organisation/model-name) or a model folder"))
    p.add_argument("model", help=_("a hub id (organisation/model-name) or a model folder"))
    p.add_argument("--check", action="store_true", help=_("also load its config now (downloads it when allowed)"))
    p.set_defaults(func=cmd_allow)
    p = sub.add_parser("disallow", help=_("remove a hub id or folder from the allowed list"))
    p.add_argument("model", help=_("a hub id (organisation/model-name) or a model folder"))
    p.set_defaults(func=cmd_disallow)


def cmd_list(args) -> int:
    print(catalog.DEFAULT)  # the id to type, not a word to translate
    for entry in catalog.allowed_models():
        print(entry)
    return 0


def cmd_allow(args) -> int:
    if args.check:
        base = catalog.resolve(args.model)
        print(_("{model}: {model_type}, up to {n} tokens, at {source}", model=args.model, model_type=base.model_type,
                n=base.max_length, source=base.source))
    catalog.allow_model(args.model)
    print(_("Allowed: {model}", model=args.model))
    return 0


def cmd_disallow(args) -> int:
    catalog.disallow_model(args.model)
    print(_("No longer allowed: {model}", model=args.model))
    return 0
