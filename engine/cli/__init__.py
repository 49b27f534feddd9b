"""The ``eventmap`` command. Output is for people and scripts alike: JSON on stdout,
``file:line: path: message`` on stderr, and stable exit codes:
0 sent or skipped, 2 rejected (the event is bad), 1 usage or configuration error.

parser.py declares every command and its options; a command's module (mapping.py,
outbox.py, serve.py, console.py; what they share is in common.py) is imported only
when it runs, so ``eventmap --help`` starts at once, and ``--version`` needs not even
the parser. This module only parses, runs the command and turns errors into exit codes.
"""
from __future__ import annotations

import re
import sys
from importlib import import_module

from .. import __version__

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "EXIT_REJECTED", "JsonLines", "Progress", "UsageError", "main"]

EXIT_OK, EXIT_CONFIG, EXIT_REJECTED, EXIT_FAILED = 0, 1, 2, 3
VERSION = f"eventmap {__version__}"

UNKNOWN_NAME = re.compile(r"^unknown (destination|source) '")   # engine.Engine's words for a name it has no file for


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:   # no parser needed: importing argparse alone costs half a bare interpreter's start
        print(VERSION)
        return EXIT_OK
    from .parser import parse, top_parser
    args = parse(argv)
    if args.command is None:
        top_parser().print_help()
        return EXIT_CONFIG
    from ..logs import configure
    from ..problems import ConfigError
    from .common import UsageError
    configure(plain=True)   # status lines on stderr; serve and deliver switch to the configuration's format
    try:
        return command(args.run)(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        folder = getattr(args, "mappings_folder", None)   # set by the command when it chose one (common.py)
        if folder is not None and any(UNKNOWN_NAME.match(p.message) for p in exc.problems):
            print(f"eventmap: {folder.note()}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"eventmap: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def command(reference: str):
    """``"mapping:cmd_render"``: the function, its module imported now."""
    module, name = reference.split(":")
    return getattr(import_module(f".{module}", __name__), name)


def __getattr__(name: str):
    """What the commands share (common.py), for scripts and tests that use it too, imported when asked for."""
    if name in ("JsonLines", "Progress", "UsageError"):
        return getattr(import_module(".common", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
