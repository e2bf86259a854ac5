"""The ``w2sjax`` command line. Each subcommand lives in ``w2sjax/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import w2sjax
import w2sjax.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w2sjax", description="Exact weak-to-strong generalization in random-feature networks."
    )
    parser.add_argument("--version", action="version", version=f"w2sjax {w2sjax.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(w2sjax.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"w2sjax.commands.{info.name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        print(f"w2sjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
