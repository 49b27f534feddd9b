"""Turning the console on: its credentials in the configuration file, the console off without them,
and ``eventmap console`` on its own. No browser needed: plain HTTP against real processes."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import requests
from console_harness import CONSOLE_PASSWORD, CONSOLE_USER
from serve_harness import Server, environment, write_config

from engine.problems import ConfigError
from engine.serve import load_serve_config


def with_console(path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + textwrap.dedent(text), encoding="utf-8")


def test_console_credentials_are_checked_with_file_and_line(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    lines = len(path.read_text(encoding="utf-8").splitlines())
    with_console(path, """\
        console:
          username: admin
          password: {env: NOT_SET_FOR_THE_CONSOLE}
        """)
    with pytest.raises(ConfigError) as raised:
        load_serve_config(path, environment())
    assert (f"eventmap.yaml:{lines + 3}: console.password: the environment variable NOT_SET_FOR_THE_CONSOLE "
            f"is not set") in str(raised.value)

    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    with_console(path, """\
        console:
          username: admin
          pasword: oops
        """)
    with pytest.raises(ConfigError) as raised:
        load_serve_config(path, environment())
    assert f"eventmap.yaml:{lines + 1}: console" in str(raised.value) and "pasword" in str(raised.value)


def test_the_password_never_shows_in_a_repr(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    with_console(path, "console: {username: admin, password: {env: TEST_CONSOLE_PASSWORD}}\n")
    config = load_serve_config(path, {**environment(), "TEST_CONSOLE_PASSWORD": CONSOLE_PASSWORD})
    assert config.console.matches((CONSOLE_USER, CONSOLE_PASSWORD))
    assert not config.console.matches((CONSOLE_USER, CONSOLE_PASSWORD + "x"))
    assert CONSOLE_PASSWORD not in repr(config) + repr(config.console)


def test_a_server_with_a_file_but_no_console_section_says_how_to_turn_it_on(tmp_path):
    write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        answer = requests.get(server.url + "/console/", timeout=10)
    assert answer.status_code == 404
    assert "the console is off: add console: {username: ..., password: {env: ...}} to" in answer.text


def console_process(folder, *args: str, env: dict | None = None) -> Server:
    server = Server(folder, env=env)
    server.args = [sys.executable, "-m", "engine", "console", "--port", "0", *args]
    return server


def test_eventmap_console_runs_alone_against_the_store(tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    with_console(path, "console: {username: admin, password: {env: TEST_CONSOLE_PASSWORD}}\n")
    env = {**environment(), "TEST_CONSOLE_PASSWORD": CONSOLE_PASSWORD}
    with console_process(tmp_path, "--config", "eventmap.yaml", env=env) as console:
        root = requests.get(console.url + "/", timeout=10, allow_redirects=False)
        assert root.status_code == 303 and root.headers["Location"] == "/console/"
        assert requests.get(console.url + "/console/", timeout=10).status_code == 401
        page = requests.get(console.url + "/console/", auth=(CONSOLE_USER, CONSOLE_PASSWORD), timeout=10)
        assert page.status_code == 200 and 'data-destination="planhat"' in page.text
        assert "/v1/track" not in requests.get(console.url + "/v1/track", timeout=10, allow_redirects=False).text
    assert (tmp_path / "events.db").exists()


def run_console(folder, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "console", "--port", "0", *args], cwd=folder,
                          env=environment(), capture_output=True, text=True, timeout=60)


def test_eventmap_console_refuses_to_run_without_a_login_where_others_could_reach_it(tmp_path):
    write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    done = run_console(tmp_path, "--config", "eventmap.yaml")
    assert done.returncode == 1
    assert "eventmap.yaml: console: no console credentials: add console: {username: ..., password:" in done.stderr
    done = run_console(tmp_path, "--host", "0.0.0.0")
    assert done.returncode == 1
    assert "--host: without a configuration file the console has no login, so it listens on localhost only" in done.stderr
