"""The newcomer's path through README.md and docs/server.md, run as written (issue 26).

The tutorial's destination is found by ``render``, ``serve`` and the console from another
folder; its snapshot step behaves as the README says; docs/server.md's complete configuration
serves, its SDK example delivers once it flushes, and its analytics.js snippet is the one the
browser test runs. Commands are taken from the documents (or checked to be in them word for
word), so a change to either side fails here.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest
import requests
from conftest import REPO
from serve_harness import Server, environment, wait_for

README = (REPO / "README.md").read_text(encoding="utf-8")
SERVER_MD = (REPO / "docs" / "server.md").read_text(encoding="utf-8")
TUTORIAL = README.split("## Five-minute tutorial: a new destination", 1)[1]


def block_after(text: str, marker: str, language: str) -> str:
    """The first ```language block after ``marker``."""
    return re.search(rf"```{language}\n(.*?)```", text.split(marker, 1)[1], re.S).group(1)


def eventmap(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**environment(), **(env or {})})


def as_run(line: str, clone) -> tuple[dict, list[str]]:
    """A README command line (VAR=value ... $CLONE/.venv/bin/eventmap ARGS) as (environment, eventmap arguments)."""
    words = shlex.split(line.replace("$CLONE", str(clone)))
    env = {}
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == f"{clone}/.venv/bin/eventmap", line
    return env, words[1:]


# --------------------------------------------------------------------------- README: a fresh shell

def test_the_readme_runs_eventmap_from_the_venv_in_every_command():
    commands = [line for block in re.findall(r"```sh\n(.*?)```", README, re.S) for line in block.splitlines()]
    bare = [line for line in commands if re.match(r"\s*(\w+=\S+\s+)*eventmap\b", line)]
    assert bare == [], "a fresh shell has no eventmap on its PATH: write .venv/bin/eventmap"
    assert "source .venv/bin/activate" in README
    assert "(cd tests/js && npm ci)" in README


def test_the_readmes_browser_command_runs_every_test_that_drives_the_browser():
    [command] = [block for block in re.findall(r"```sh\n(.*?)```", README, re.S) if "npm ci" in block]
    listed = set(re.findall(r"tests/(test_\w+\.py)", command))
    drives = {path.name for path in (REPO / "tests").glob("test_*.py") if path.name != os.path.basename(__file__)
              and re.search(r"playwright|browser_missing", path.read_text(encoding="utf-8"))}
    assert drives and drives <= listed, f"the README's browser command leaves out {sorted(drives - listed)}"
    assert all((REPO / "tests" / name).exists() for name in listed)


# --------------------------------------------------------------------------- the tutorial, from any folder

@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clone's layout with the tutorial's two files written as the README has them."""
    folder = tmp_path_factory.mktemp("clone")
    shutil.copytree(REPO / "mappings", folder / "mappings")
    shutil.copytree(REPO / "fixtures" / "events", folder / "fixtures" / "events")
    acme = block_after(TUTORIAL, "Create `mappings/destinations/acme.yaml`:", "yaml")
    (folder / "mappings" / "destinations" / "acme.yaml").write_text(acme, encoding="utf-8")
    serve = block_after(TUTORIAL, "Save this as `acme-serve.yaml` in the clone:", "yaml")
    (folder / "acme-serve.yaml").write_text(serve, encoding="utf-8")
    return folder


@pytest.fixture
def elsewhere(tmp_path):
    return tmp_path


def test_validate_and_render_find_the_tutorials_destination(clone, elsewhere):
    assert "2. `.venv/bin/eventmap validate`" in TUTORIAL
    validated = eventmap("validate", cwd=clone)
    assert validated.returncode == 0, validated.stderr
    assert "acme" in validated.stdout

    line = next(line.strip(" `.") for line in TUTORIAL.splitlines() if "eventmap render acme $CLONE" in line)
    env, args = as_run(line, clone)
    rendered = eventmap(*args, cwd=elsewhere, env=env)
    assert rendered.returncode == 0, rendered.stderr
    request = json.loads(rendered.stdout)["requests"][0]
    assert request["url"] == "https://api.acme.example/v1/events" and request["headers"]["Authorization"] == "Bearer ***"

    without = eventmap(*args[:-2], cwd=elsewhere, env=env)   # without --mappings: the shipped ones, and it says so
    assert without.returncode == 1
    assert "unknown destination 'acme'" in without.stderr and "(the shipped mappings: no --mappings" in without.stderr


def test_serve_and_its_console_find_the_tutorials_destination_from_another_folder(clone, elsewhere):
    line = next(line for line in TUTORIAL.splitlines() if " serve --config $CLONE/acme-serve.yaml" in line)
    env, args = as_run(line, clone)
    server = Server(elsewhere, env={**environment(), **env})
    server.args = [sys.executable, "-m", "engine", *args, "--port", "0", "--workers", "1"]
    curl = next(line for line in TUTORIAL.splitlines() if line.startswith("curl "))
    key = re.search(r"-u (\S+):", curl).group(1)
    body = json.loads(re.search(r"-d '(.*)'", curl).group(1))
    with server:
        answer = requests.post(server.url + "/v1/track", json=body, auth=(key, ""), timeout=10)
        assert answer.status_code == 200, answer.text

        def sent():
            listed = eventmap("deliveries", "list", "--config", clone / "acme-serve.yaml", cwd=elsewhere)
            return [json.loads(row) for row in listed.stdout.splitlines() if '"dry_run"' in row]
        assert wait_for(sent, 30, "the dry-run delivery")[0]["destination"] == "acme"
        page = requests.get(server.url + "/console/", auth=("admin", env["ACME_CONSOLE_PASSWORD"]), timeout=10)
        assert page.status_code == 200 and 'data-destination="acme"' in page.text
    assert "eventmap serve: sources: web; destinations: acme;" in server.output()
    assert not (elsewhere / "eventmap.db").exists()   # the store is next to the configuration file

    console = Server(elsewhere, env={**environment(), **env})
    console.args = [sys.executable, "-m", "engine", "console", "--config", str(clone / "acme-serve.yaml"),
                    "--port", "0"]
    with console:
        page = requests.get(console.url + "/console/", auth=("admin", env["ACME_CONSOLE_PASSWORD"]), timeout=10)
        assert page.status_code == 200 and 'data-destination="acme"' in page.text


def test_the_first_snapshot_run_fails_as_the_readme_says_and_the_second_passes(clone):
    command = ".venv/bin/python -m pytest -q tests/test_snapshots.py -k acme --snapshot-update"
    assert command in TUTORIAL and "fails on purpose" in TUTORIAL and "Snapshot directory was modified" in TUTORIAL
    (clone / "tests").mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "test_snapshots.py", clone / "tests")
    shutil.copytree(REPO / "fixtures" / "settings", clone / "fixtures" / "settings", dirs_exist_ok=True)
    for code in ("engine", "schemas"):   # the clone's own engine: it reads the clone's mappings/ (engine/paths.py)
        shutil.copytree(REPO / code, clone / code, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**environment(), "PYTHONPATH": str(clone)}
    pytest_run = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *shlex.split(command)[3:]]
    first = subprocess.run(pytest_run, cwd=clone, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 1 and "Snapshot directory was modified: tests/snapshots/acme" in first.stdout
    assert (clone / "tests" / "snapshots" / "acme" / "track-order-completed.json").exists()
    second = subprocess.run(pytest_run[:-1], cwd=clone, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stdout


# --------------------------------------------------------------------------- docs/server.md

SECRETS = {"WEB_WRITE_KEY": "docs-web-key", "BACKEND_WRITE_KEY": "docs-backend-key",
           "GLADLY_WEBHOOK_PASSWORD": "docs-hook-password", "CONSOLE_PASSWORD": "docs-console-password",
           "EVENTMAP_PLANHAT_TENANT_TOKEN": "docs-planhat-token", "EVENTMAP_CRISP_API_KEY": "id:key",
           "EVENTMAP_CRISP_WEBSITE_ID": "site", "EVENTMAP_GLADLY_API_TOKEN": "docs-gladly-token"}


def test_the_complete_configuration_serves_and_the_sdk_example_delivers_once_it_flushes(tmp_path):
    config = block_after(SERVER_MD, "## A complete configuration", "yaml")
    (tmp_path / "eventmap.yaml").write_text(config, encoding="utf-8")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    (tmp_path / "plans").mkdir()   # the configuration names the example tracking plan
    shutil.copy(REPO / "fixtures" / "plans" / "shop.yaml", tmp_path / "plans" / "shop.yaml")
    umd = tmp_path / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"   # what npm install leaves
    umd.mkdir(parents=True)
    (umd / "standalone.js").write_text("/* analytics.js */", encoding="utf-8")
    env = {**environment(), **SECRETS}
    server = Server(tmp_path, "--config", "eventmap.yaml", "--host", "127.0.0.1", "--workers", "1", "--intake-only",
                    env=env)
    example = block_after(SERVER_MD, "### From your app: SDKs", "python")
    assert example.rstrip().splitlines()[-1].startswith("analytics.shutdown()")
    with server:
        script = example.replace('"the backend write key"', repr(SECRETS["BACKEND_WRITE_KEY"])).replace(
            '"http://localhost:8088"', repr(server.url))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        listed = eventmap("deliveries", "list", "--config", "eventmap.yaml", cwd=tmp_path, env=SECRETS)
        deliveries = [json.loads(row) for row in listed.stdout.splitlines()]
        assert {d["destination"] for d in deliveries} == {"planhat", "crisp"}
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["level"] for line in lines)   # logging: {format: json}


def test_the_snippet_in_server_md_is_the_one_the_browser_test_runs():
    from test_browser import snippet_page
    documented = block_after(SERVER_MD, "**With Segment's snippet**", "html")
    tested = snippet_page("WEB_WRITE_KEY", "https://collector.example", "someone",
                          script="https://collector.example/analytics.js/v1/WEB_WRITE_KEY/analytics.min.js")

    def stub(text: str) -> str:
        return next(line.strip() for line in textwrap.dedent(text).splitlines() if line.strip().startswith("!function"))
    assert stub(documented) == stub(tested)
    assert 'analytics.load("WEB_WRITE_KEY");' in documented


def test_the_mappings_key_and_the_search_order_are_documented():
    section = SERVER_MD.split("### Which mapping files", 1)[1].split("\n#", 1)[0]
    for words in ("--mappings DIR", "`mappings:`", "relative to the file", "`./mappings`", "shipped"):
        assert words in section
    assert os.path.exists(REPO / "docs" / "cli.md") and "## Which mapping files" in (REPO / "docs" / "cli.md").read_text()
