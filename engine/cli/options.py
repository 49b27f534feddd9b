"""The options several commands take, for parser.py.

``eventmap --help`` imports only this and parser.py (tests/test_cli_start.py), so not even
pathlib (4 ms): options that name a file or folder are turned into a Path by ``path``.
"""
from __future__ import annotations

import argparse


def path(text: str):
    """argparse's ``type`` for a file or folder: a pathlib.Path, pathlib imported once one is given."""
    from pathlib import Path
    return Path(text)


def mappings_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mappings", type=path, default=None, metavar="DIR",
                   help="folder with destinations/ and sources/ (default: the configuration's mappings:, "
                        "else ./mappings if it has destinations/, else the shipped ones)")


def store_options(p: argparse.ArgumentParser, config_required: bool = False, nested: bool = False) -> None:
    """--config and --store. ``nested``: the copy on an action under a command group (``deliveries list``),
    so ``deliveries --config X list`` and ``deliveries list --config X`` both work: the action's copy
    defaults to SUPPRESS and so never overwrites what was given before the action."""
    default = argparse.SUPPRESS if nested else None
    p.add_argument("--config", type=path, required=config_required, default=default,
                   help="the configuration file (destinations, storage, delivery)")
    p.add_argument("--store", metavar="URL", default=default,
                   help="storage URL, instead of the configuration's (sqlite:///FILE or postgresql://...)")


def responses_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--responses", type=path, metavar="DIR",
                   help="run every step of multi-step actions against saved answers: DIR/<url path>.json for GET, "
                        "DIR/<url path>.<method>.json otherwise, .<status>.json for another status (default: "
                        "show the requests of the steps sure to run and the plan of the rest)")
