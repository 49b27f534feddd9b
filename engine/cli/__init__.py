"""The ``eventmap`` command. Output is for people and scripts alike: JSON on stdout,
``file:line: path: message`` on stderr, and stable exit codes:
0 sent or skipped, 2 rejected (the event is bad), 1 usage or configuration error.

One module per command group (mapping.py, outbox.py, serve.py); what they share is
in common.py. This module only assembles the parser and turns errors into exit codes.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from ..logs import configure
from ..problems import ConfigError
from . import console, mapping, outbox, plans, serve
from .common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_REJECTED, JsonLines, Progress, UsageError

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "EXIT_REJECTED", "JsonLines", "Progress", "UsageError",
           "build_parser", "main"]

DESCRIPTION = """\
eventmap turns Segment-spec events (identify, track, page, screen, group, alias)
into the exact HTTP requests each vendor expects, from YAML mapping files.

  eventmap validate                         check every mapping file
  eventmap render planhat event.json --settings '{"tenant_token": "..."}'
  eventmap explain crisp event.json         which expression made each field
  eventmap batch events.jsonl --config eventmap.yaml
  eventmap source gladly webhook.json --lookups saved/ --to planhat
  eventmap serve --config eventmap.yaml     a Segment-compatible collector

Settings may also come from environment variables EVENTMAP_<DESTINATION>_<SETTING>,
e.g. EVENTMAP_PLANHAT_TENANT_TOKEN. Secrets are masked unless --show-secrets.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_CONFIG
    configure(plain=True)   # status lines on stderr; serve and deliver switch to the configuration's format
    try:
        return args.run(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"eventmap: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventmap", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"eventmap {installed_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    mapping.add_commands(commands)
    outbox.add_commands(commands)
    serve.add_commands(commands)
    console.add_commands(commands)
    plans.add_commands(commands)
    return parser


def installed_version() -> str:
    """The version pip installed (pyproject.toml's), or say it is a source checkout."""
    try:
        return version("eventmap")
    except PackageNotFoundError:
        return "(not installed: running from a source checkout)"
