"""The ``w2sjax`` command line. Each subcommand lives in ``w2sjax/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Exit status: 0 success; 1 a check failed (crosscheck, validate); 2 bad input (one line on stderr that says
what to change); 130 interrupted (finished work is saved; the message gives the command that resumes).
Compiled programs are cached in ``$W2SJAX_CACHE`` (default ``~/.cache/w2sjax/jax``) so that a second run
starts at once; ``W2SJAX_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import shlex
import sys
import warnings
from pathlib import Path

import w2sjax
import w2sjax.commands


class DefaultsFormatter(argparse.HelpFormatter):
    """Shows every option's default in --help, unless its help already says it (or there is none to show)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or default in (None, False, argparse.SUPPRESS) or action.option_strings == []:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """argparse with every default shown in --help, and a usage error as one line (exit status 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="w2sjax", description="Exact weak-to-strong generalization in random-feature networks.")
    parser.add_argument("--version", action="version", version=f"w2sjax {w2sjax.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for info in sorted(pkgutil.iter_modules(w2sjax.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"w2sjax.commands.{info.name}").register(sub)
    return parser


def enable_compilation_cache() -> None:
    """Persist XLA's compiled programs across runs (a second run skips compiling)."""
    import jax

    where = os.environ.get("W2SJAX_CACHE", str(Path.home() / ".cache" / "w2sjax" / "jax"))
    if where.lower() in ("off", "0", "no", ""):
        return
    try:
        Path(where).mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a cache that cannot be made is no reason to fail
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from w2sjax.studies.runner import Interrupted

    enable_compilation_cache()
    name = f"w2sjax {args.command}"
    shown = warnings.showwarning
    warnings.showwarning = lambda message, category, *_, **__: print(
        f"{name}: warning: {message} ({category.__name__})", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{name}: error: out of memory; use smaller sizes (or --method krylov for large students)",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of the output went away (``| head``): stop quietly, as a pipe does
        return 141
    except OSError as err:
        print(f"{name}: error: {err.strerror or err} ({err.filename or 'file'}); check the path and its permissions",
              file=sys.stderr)
        return 2
    except Interrupted as stop:
        resume = " ".join(shlex.quote(a) for a in ["w2sjax", *argv] if a != "--fresh")
        where = f" in {stop.folder}/runs" if stop.folder is not None else ""
        print(f"\n{name}: interrupted: {stop.saved} of {stop.total} run units saved{where}; resume with: {resume}",
              file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


def console() -> None:
    """The ``w2sjax`` command: ``main``, then exit at once with its status. When ``main`` returns every file is
    written (atomically) and closed; the interpreter's teardown would only free XLA's compiled programs and
    buffers, about 0.7 s of a 12 s ``figure fig2 --quick``."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``): nothing more can be shown
            pass
    os._exit(code)


if __name__ == "__main__":
    console()
