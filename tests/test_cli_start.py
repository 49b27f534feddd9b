"""The command starts at once (issue 26): each command imports what it needs when it runs.

Checked by what a fresh interpreter has imported after the command, never by timing (the
figures come from bench/bench_cli_start.py): ``--version`` and ``--help`` load nothing of the
delivery, server or console code, nor the libraries they need; ``validate`` and ``render`` of a
valid event load no delivery, server or console code and not jsonschema, which only explains
what fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

import engine

# run a command as the console script does, then list what was imported
PROBE = """\
import json, sys
from engine.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

SERVER_SIDE = ("engine.deliver", "engine.serve", "engine.console.", "engine.store.", "requests", "gunicorn",
               "uvicorn")
MAPPING_LIBRARIES = ("engine.engine", "engine.load", "engine.map", "yaml", "jinja2", "jmespath")


def imported_by(*args: str, cwd=REPO) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(done.stderr.strip().splitlines()[-1])


def loaded(modules: list[str], prefixes) -> list[str]:
    """The modules ``prefixes`` name: "x" is x and its submodules, "x." its submodules only."""
    def named(module: str, prefix: str) -> bool:
        return module.startswith(prefix) if prefix.endswith(".") else module == prefix or module.startswith(prefix + ".")
    return [m for m in modules if any(named(m, p) for p in prefixes)]


def test_version_loads_nothing_but_the_cli_package():
    modules = imported_by("--version")
    assert [m for m in modules if m.startswith("engine")] == ["engine", "engine.cli"]
    assert "argparse" not in modules


def test_help_loads_no_engine_code_beyond_the_parser():
    modules = imported_by("--help")
    assert "engine.cli.parser" in modules
    assert loaded(modules, SERVER_SIDE) == []
    assert loaded(modules, MAPPING_LIBRARIES + ("jsonschema", "engine.cli.common", "engine.cli.mapping")) == []


@pytest.mark.parametrize("command", [
    ["validate"],
    ["render", "planhat", "fixtures/events/track-order-completed.json", "--settings", '{"tenant_token": "t"}'],
])
def test_validate_and_render_load_no_delivery_server_or_console_code(command):
    modules = imported_by(*command)
    assert "engine.engine" in modules   # the command did run
    assert loaded(modules, SERVER_SIDE) == []
    assert "jsonschema" not in modules   # every file and the event are valid: jsonschema-rs said so


def test_the_public_api_is_imported_when_first_used():
    done = subprocess.run([sys.executable, "-c", "import sys, engine; print('engine.engine' in sys.modules); "
                           "from engine import Engine, send; print('engine.engine' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.split() == ["False", "True"]
    assert set(engine.__all__) == set(engine._PUBLIC) and all(getattr(engine, name) for name in engine.__all__)
    with pytest.raises(AttributeError):
        engine.no_such_name  # noqa: B018
