"""``python -m engine models list|allow|disallow``: the base models the dashboard may use (the allow-list).

The dashboard's Train page accepts ``default`` and what is on this list only; the CLI runs as the operator and may
name any folder. Hub ids are downloaded into the data directory only with ``BELLWETHER_ALLOW_DOWNLOADS=1``.
"""

from __future__ import annotations

from engine.models import catalog


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, allow and disallow the base models the dashboard may use")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    p = sub.add_parser("list", help="the allowed base models ('default' is always allowed)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("allow", help="allow a hub id (organisation/model-name) or a model folder")
    p.add_argument("model")
    p.add_argument("--check", action="store_true", help="also load its config now (downloads it when allowed)")
    p.set_defaults(func=cmd_allow)
    p = sub.add_parser("disallow", help="remove a hub id or folder from the allowed list")
    p.add_argument("model")
    p.set_defaults(func=cmd_disallow)


def cmd_list(args) -> int:
    print("default")
    for entry in catalog.allowed_models():
        print(entry)
    return 0


def cmd_allow(args) -> int:
    if args.check:
        base = catalog.resolve(args.model)
        print(f"{args.model}: {base.model_type}, up to {base.max_length} tokens, at {base.source}")
    catalog.allow_model(args.model)
    print(f"Allowed: {args.model}")
    return 0


def cmd_disallow(args) -> int:
    catalog.disallow_model(args.model)
    print(f"No longer allowed: {args.model}")
    return 0
