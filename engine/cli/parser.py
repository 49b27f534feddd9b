"""Every command's options and help: all that ``eventmap --help`` and ``--version`` need.

Parsing takes two steps: the command's name (or ``--help``, ``--version``), then that
command's own options, so only the parser of the command given is ever built (building
all twenty took a fifth of ``--version``'s time). A command's code (mapping.py,
outbox.py, serve.py, console.py, plans.py, replay.py) is imported only when it runs: each
parser names it as ``run="module:function"``, which ``engine.cli.main`` resolves. So this
module imports nothing of the engine but the leaf modules below (tests/test_cli_start.py
checks it).
"""
from __future__ import annotations

import argparse

from ..console import DEFAULT_PORT  # the package's __init__ only: two constants, for this
from ..states import DEAD, DELIVERED, DRY_RUN, REJECTED, SKIPPED, STATES
from . import VERSION
from .options import mappings_option, path, responses_option, store_options

DESCRIPTION = """\
eventmap turns Segment-spec events (identify, track, page, screen, group, alias)
into the exact HTTP requests each vendor expects, from YAML mapping files.

  eventmap validate                         check every mapping file
  eventmap render planhat event.json --settings '{"tenant_token": "..."}'
  eventmap explain crisp event.json         which expression made each field
  eventmap batch events.jsonl --config eventmap.yaml
  eventmap source gladly webhook.json --lookups saved/ --to planhat
  eventmap serve --config eventmap.yaml     a Segment-compatible collector

Mapping files are read from --mappings DIR, else the configuration's mappings:
(relative to that file), else ./mappings when it has destinations/, else the
shipped ones. Settings may also come from environment variables
EVENTMAP_<DESTINATION>_<SETTING>, e.g. EVENTMAP_PLANHAT_TENANT_TOKEN.
Secrets are masked unless --show-secrets.
"""


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line as a Namespace: ``command`` (None when none was given), its options, and ``run``."""
    top = top_parser()
    first = top.parse_args(argv[:1])   # --help and --version exit here; a misspelt command is an error here
    if first.command is None:
        return first
    name = first.command
    parser = argparse.ArgumentParser(prog=f"eventmap {name}", description=COMMANDS[name][0])
    COMMANDS[name][1](parser)
    args = parser.parse_args(argv[1:])
    args.command = name
    return args


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventmap", usage="eventmap [-h] [--version] COMMAND ...",
                                     description=f"{DESCRIPTION}\n{command_list()}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=VERSION)
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND",
                        help="one of the commands above; 'eventmap COMMAND --help' shows its options")
    return parser


def command_list() -> str:
    """The commands and what each does, as argparse lists sub-commands (each summary fits on its line)."""
    return "\n".join(["commands:", *(f"  {name:<12}{summary}" for name, (summary, _) in COMMANDS.items())])


# --------------------------------------------------------------------------- each command's options: mapping.py

def add_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", type=path, help="a mappings folder (the same as --mappings)")
    p.add_argument("--plan", action="append", type=path, default=[], metavar="FILE",
                   help="also check this tracking plan file (repeatable)")
    p.add_argument("--config", type=path, help="also check this configuration file and the tracking plans it names")
    mappings_option(p)
    p.set_defaults(run="mapping:cmd_validate")


def add_render(p: argparse.ArgumentParser) -> None:
    p.add_argument("destination", help="file name (planhat) or display name (Planhat)")
    p.add_argument("event", nargs="?", default="-", help="a JSON file with one event, or - for stdin (default)")
    p.add_argument("--settings", help="settings as a JSON object or a JSON/YAML file")
    p.add_argument("--show-secrets", action="store_true", help="print credentials instead of ***")
    responses_option(p)
    mappings_option(p)
    p.set_defaults(run="mapping:cmd_render")


def add_explain(p: argparse.ArgumentParser) -> None:
    p.description = ("eventmap explain DEST EVENT: each output field, its expression and value. "
                     "eventmap explain --code DEST TYPE: the Python the mapping compiles to.")
    p.add_argument("destination")
    p.add_argument("event", help="a JSON file with one event, or - (with --code: a call type such as track)")
    p.add_argument("--code", action="store_true", help="print the generated Python for the call type given instead of an event")
    p.add_argument("--settings", help="settings as a JSON object or a JSON/YAML file")
    responses_option(p)
    mappings_option(p)
    p.set_defaults(run="mapping:cmd_explain")


def add_batch(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", nargs="?", default="-", help="a JSON Lines file, or - for stdin (default)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--destination", help="one destination (settings from --settings or the environment)")
    target.add_argument("--config", type=path, help="a routes file naming every configured destination")
    p.add_argument("--settings", help="with --destination: settings as JSON or a file")
    p.add_argument("--show-secrets", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 2 when any event is rejected (default: 0, with a summary on stderr)")
    p.add_argument("--json", action="store_true",
                   help="print the JSON lines even on a terminal (they are printed whenever stdout is not one)")
    responses_option(p)
    mappings_option(p)
    p.set_defaults(run="mapping:cmd_batch")


def add_source(p: argparse.ArgumentParser) -> None:
    p.description = ("Map a webhook payload through a source file. Exit 0 events or skipped, 2 rejected, "
                     "3 a lookup or delivery failed (retry later), 1 configuration error.")
    p.add_argument("source", help="file name (gladly) or display name")
    p.add_argument("payload", nargs="?", default="-", help="a JSON file with one payload, or - for stdin (default)")
    p.add_argument("--jsonl", action="store_true", help="the input is JSON Lines, one payload a line; one result a line out")
    p.add_argument("--lookups", type=path, metavar="DIR",
                   help="answer lookups from saved responses DIR/<url path>.json instead of calling the vendor")
    p.add_argument("--settings", help="the source's settings as JSON or a file (or EVENTMAP_<SOURCE>_<SETTING>)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per lookup or delivery request (default 10)")
    route = p.add_mutually_exclusive_group()
    route.add_argument("--to", action="append", metavar="DESTINATION",
                       help="also render the events for this destination (repeatable; settings from the environment)")
    route.add_argument("--config", type=path, help="also render the events for every destination in this routes file")
    p.add_argument("--send", action="store_true", help="deliver the rendered requests (retrying 429 and 5xx)")
    p.add_argument("--show-secrets", action="store_true")
    mappings_option(p)
    p.set_defaults(run="mapping:cmd_source")


# --------------------------------------------------------------------------- outbox.py

def add_enqueue(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", nargs="?", default="-", help="a JSON Lines file, or - for stdin (default)")
    store_options(p, config_required=True)
    p.add_argument("--verbose", action="store_true", help="print where each event went, one JSON line each")
    p.add_argument("--source", metavar="NAME", help="the SDK source the events come from: its tracking plan applies "
                                                    "(default: the only source, when the configuration has plans)")
    mappings_option(p)
    p.set_defaults(run="outbox:cmd_enqueue")


def add_deliver(p: argparse.ArgumentParser) -> None:
    store_options(p, config_required=True)
    p.add_argument("--until-idle", action="store_true", help="stop when nothing is due now (retries wait in the store)")
    p.add_argument("--dry-run", action="store_true", help="send nothing: print each request (secrets masked) and "
                                                          "record it as dry_run")
    p.add_argument("--progress", type=float, default=None, metavar="SECONDS",
                   help="log a line per destination this often (default: logging.every, 60s; 0 turns it off)")
    mappings_option(p)
    p.set_defaults(run="outbox:cmd_deliver")


def add_deliveries(p: argparse.ArgumentParser) -> None:
    store_options(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(run="outbox:cmd_counts")
    q = actions.add_parser("counts", help="deliveries per destination and state (the default)")
    store_options(q, nested=True)
    q.set_defaults(run="outbox:cmd_counts")
    q = actions.add_parser("list", help="deliveries, one JSON line each (dead letters with --state dead)")
    store_options(q, nested=True)
    q.add_argument("--destination")
    q.add_argument("--state", choices=STATES)
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--after", type=int, default=0, metavar="ID", help="list ids after this one (paging)")
    q.set_defaults(run="outbox:cmd_list")
    q = actions.add_parser("show", help="one delivery: its event, last request (masked) and every attempt")
    store_options(q, nested=True)
    q.add_argument("id", type=int)
    q.set_defaults(run="outbox:cmd_show")
    q = actions.add_parser("retry", help="queue dead deliveries again (all, one destination's, or chosen ids)")
    store_options(q, nested=True)
    q.add_argument("ids", nargs="*", type=int, help="delivery ids (default: every one matching the filters)")
    q.add_argument("--destination")
    q.add_argument("--state", choices=(DEAD, REJECTED, SKIPPED, DELIVERED, DRY_RUN), default=DEAD,
                   help="which final state to re-queue (default dead)")
    q.set_defaults(run="outbox:cmd_retry")


def add_db(p: argparse.ArgumentParser) -> None:
    store_options(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("upgrade", help="create the store or apply pending migrations; safe to run twice")
    store_options(q, nested=True)
    q.set_defaults(run="outbox:cmd_db_upgrade")
    q = actions.add_parser("status", help="the store's schema version")
    store_options(q, nested=True)
    q.set_defaults(run="outbox:cmd_db_status")


# --------------------------------------------------------------------------- serve.py and console.py

def add_serve(p: argparse.ArgumentParser) -> None:
    p.description = ("Accept Segment HTTP API calls (/v1/batch, /v1/track, ...) and vendor webhooks "
                     "(/sources/NAME), store them durably, and deliver them. With no --config: localhost, any "
                     "write key, ./eventmap.db and a dry-run sink.")
    p.add_argument("--config", type=path, help="configuration file: sources (write keys, webhooks), destinations, "
                                               "storage, server, logging")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or server.host)")
    p.add_argument("--port", type=int, help="port (default 8088, or server.port; 0 picks a free one)")
    p.add_argument("--workers", type=int, help="server processes (default 2, or server.workers)")
    p.add_argument("--threads", type=int, help="threads per server process (default 4, or server.threads)")
    p.add_argument("--dry-run", action="store_true", help="deliver to the dry-run sink instead of the vendors")
    p.add_argument("--intake-only", action="store_true",
                   help="only accept and store: destinations are then delivered by 'eventmap deliver', "
                        "and webhook payloads wait for a server started without this option")
    mappings_option(p)
    p.set_defaults(run="serve:cmd_serve")


def add_console(p: argparse.ArgumentParser) -> None:
    p.description = ("Serve the web console (also at /console on 'eventmap serve') against the store of --config. "
                     "It needs console: {username, password} in the file; with no file it opens ./eventmap.db on "
                     "localhost without a login, and only when that file exists.")
    p.add_argument("--config", type=path, help="configuration file (destinations, storage, console credentials)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or server.host)")
    p.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    mappings_option(p)
    p.set_defaults(run="console:cmd_console")


# --------------------------------------------------------------------------- plans.py (docs/tracking-plans.md)

def add_violations(p: argparse.ArgumentParser) -> None:
    store_options(p)
    p.add_argument("--source", help="only this source's")
    p.add_argument("--event", help="only this event's (a track's name, or '(identify traits)', '(group traits)')")
    p.add_argument("--since", metavar="T", help="only from then on: 2024-05-02, 2024-05-02T09:00:00Z or 6h (ago); "
                                                "counted by the hour")
    p.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    p.add_argument("--json", action="store_true", help="one JSON line per row, with its example event "
                                                       "(the default when stdout is not a terminal)")
    p.set_defaults(run="plans:cmd_violations")


def add_plan(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("infer", help="a starting plan from events: their names, property types, and what is "
                                         "always present (required)")
    q.add_argument("events", nargs="?", help="a JSON Lines file of events, or - for stdin")
    q.add_argument("--from-store", action="store_true", help="read the events accepted into the store instead")
    q.add_argument("--since", metavar="T", help="with --from-store: events received from then on (2024-05-02, 7d...)")
    store_options(q)
    q.add_argument("--name", default="inferred", help="the plan's name (default: inferred)")
    q.add_argument("--output", "-o", type=path, help="write the plan here instead of stdout")
    q.set_defaults(run="plans:cmd_infer")
    q = actions.add_parser("diff", help="what traffic does that a plan does not describe: unplanned events, "
                                        "properties the plan never names, types that differ")
    q.add_argument("plan", type=path, help="the plan file")
    q.add_argument("--since", metavar="T", help="events received into the store from then on (2024-05-02, 7d...)")
    q.add_argument("--events", metavar="FILE", help="read these JSON Lines events instead of the store")
    store_options(q)
    q.add_argument("--json", action="store_true", help="one JSON line per difference (the default when stdout is "
                                                       "not a terminal)")
    q.set_defaults(run="plans:cmd_diff")


# --------------------------------------------------------------------------- replay.py (docs/operations.md)

def add_replay(p: argparse.ArgumentParser) -> None:
    p.description = ("Run the events accepted within [--since, --until) again through the configuration's mappings "
                     "and routes as they are today, and queue new deliveries for 'eventmap deliver'. Times: "
                     "2024-05-01, 2024-05-01T12:00:00Z (UTC unless an offset is given), now, or a duration ago "
                     "(24h, 7d). A replay bypasses the dedupe window on purpose. Killed or stopped, it is resumed "
                     "with --resume ID and enqueues no event twice; the same command with the same absolute times "
                     "resumes it too, and one overlapping it with the same filters is refused.")
    store_options(p, config_required=True)
    p.add_argument("--since", metavar="T", help="from this time on (when eventmap accepted the events)")
    p.add_argument("--until", metavar="T", help="up to, not including, this time (default: now)")
    p.add_argument("--source", metavar="S", help="only events that came in from this source (its name in the "
                                                 "configuration's sources)")
    p.add_argument("--destination", metavar="D", action="append",
                   help="only to this destination (repeatable; default: every enabled one)")
    p.add_argument("--where", metavar="JMESPATH", help="only events for which this JMESPath condition is true")
    p.add_argument("--dry-run", action="store_true", help="write nothing: print what would be sent (secrets masked) "
                                                          "and the summary")
    control = p.add_mutually_exclusive_group()
    control.add_argument("--resume", type=int, metavar="ID", help="continue an unfinished replay (killed or stopped)")
    control.add_argument("--abandon", type=int, metavar="ID", help="give up an unfinished replay for good")
    control.add_argument("--list", action="store_true", help="the latest replays, one JSON line each")
    mappings_option(p)
    p.set_defaults(run="replay:cmd_replay")


# name -> (what it does, the function that adds its options), in the order --help lists them
COMMANDS = {
    "validate": ("check all mapping files and schemas; print every problem as file:line: path: message", add_validate),
    "render": ("render one event for one destination and print the outcome as JSON", add_render),
    "explain": ("show each output field with the expression that produced it and its value", add_explain),
    "batch": ("render JSON Lines events; write one outcome per event and destination per line", add_batch),
    "source": ("turn vendor webhook payloads into Segment events (and optionally route or send them)", add_source),
    "enqueue": ("accept JSON Lines events into the outbox, durably, for 'eventmap deliver'", add_enqueue),
    "deliver": ("run the delivery workers until stopped (SIGTERM or Ctrl-C stops cleanly)", add_deliver),
    "deliveries": ("what is queued, retrying, delivered and dead, per destination", add_deliveries),
    "db": ("create or upgrade the store's tables", add_db),
    "serve": ("a Segment-compatible HTTP collector: point a Segment SDK's host here", add_serve),
    "console": ("the web console alone: events, deliveries, dead letters, mapping tester", add_console),
    "violations": ("tracking-plan violations recorded at intake, per source, event and rule", add_violations),
    "plan": ("write a tracking plan from a sample of events, or compare one with traffic", add_plan),
    "replay": ("send archived events again through today's mappings and routes (new deliveries)", add_replay),
}
