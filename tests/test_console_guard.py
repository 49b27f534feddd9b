"""The console's doors: the Host a console without a login answers for (DNS rebinding), the back-off
for wrong logins, and its cookie (Secure behind HTTPS, a token signed for the login, none on a refusal).

Real ``eventmap serve`` processes over HTTP; what a person sees (the refusal pages) in Debian's Chromium.
Clients are told apart through ``server.trusted_proxies`` and X-Forwarded-For, so each test has
addresses of its own on one server.
"""
from __future__ import annotations

import multiprocessing
import re
import uuid

import pytest
import requests
from console_harness import CONSOLE_PASSWORD, CONSOLE_USER, launch, playwright_or_skip
from serve_harness import Server, environment, write_config

from engine.console import login
from engine.console.app import COOKIE
from engine.console.csrf import Tokens, login_of
from engine.console.login import FREE, GLOBAL_FAILURES, MAX_WAIT, LoginGuard
from engine.serve.hosts import host_name, misdirected

FOREIGN = "attacker.example"


# --------------------------------------------------------------------------- the Host check

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8088", "10.1.2.3:80", "[::1]:8088", "::1", "LOCALHOST:8088",
                                  "localhost", "localhost.:8088", "console.example:443", "Console.Example"])
def test_addresses_localhost_and_configured_names_are_answered(host):
    assert misdirected({"HTTP_HOST": host}, ["console.example"]) is None


@pytest.mark.parametrize("host", [f"{FOREIGN}:8088", FOREIGN, "localhost.attacker.example", "127.0.0.1.nip.io",
                                  "2130706433", "console.example.attacker.example", "a,127.0.0.1", "", "notlocalhost",
                                  "attacker.localhost:8088"])
def test_any_other_name_is_misdirected_with_the_reason(host):
    reason = misdirected({"HTTP_HOST": host}, ["console.example"])
    assert reason is not None and "server.hosts" in reason and "DNS rebinding" in reason


def test_a_star_answers_every_name_and_no_host_is_answered():
    assert misdirected({"HTTP_HOST": FOREIGN}, ["*"]) is None
    assert misdirected({}, []) is None   # HTTP/1.0 without Host: not a browser


def test_host_names_lose_port_case_and_final_dot():
    assert [host_name(h) for h in ("A.Example:80", "[::1]:1", "x.example.", "::1")] == ["a.example", "::1",
                                                                                         "x.example", "::1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``eventmap serve`` with no file: the console has no login and listens on 127.0.0.1."""
    with Server(tmp_path_factory.mktemp("demo"), "--intake-only") as server:
        yield server


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_a_console_without_a_login_answers_only_for_its_own_hosts(demo):
    """The issue's reproduction: Host attacker.example read the events and retried dead letters."""
    port = port_of(demo)
    for path in ("/console/events", "/console/", "/console/static/console.css"):
        answer = requests.get(demo.url + path, headers={"Host": f"{FOREIGN}:{port}"}, timeout=10)
        assert answer.status_code == 421, path
        assert f"does not answer for the host {FOREIGN}:{port}" in answer.text
        assert "Set-Cookie" not in answer.headers
    retry = requests.post(demo.url + "/console/dead/retry", data={"confirmed": "yes", "destination": "planhat"},
                          headers={"Host": f"{FOREIGN}:{port}", "Origin": f"http://{FOREIGN}:{port}"}, timeout=10)
    assert retry.status_code == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert requests.get(demo.url + "/console/events", headers={"Host": host}, timeout=10).status_code == 200


def test_the_api_needs_the_host_check_where_it_needs_no_key(demo):
    """In the demo any write key is taken, so every route is checked; /healthz and /metrics always are."""
    port = port_of(demo)
    for path in ("/healthz", "/metrics"):
        answer = requests.get(demo.url + path, headers={"Host": f"{FOREIGN}:{port}"}, timeout=10)
        assert answer.status_code == 421 and answer.json()["code"] == "misdirected"
        assert requests.get(demo.url + path, timeout=10).status_code == 200
    track = requests.post(demo.url + "/v1/track", json={"userId": "u", "event": "E"}, auth=("any-key", ""),
                          headers={"Host": f"{FOREIGN}:{port}"}, timeout=10)
    assert track.status_code == 421
    assert requests.post(demo.url + "/v1/track", json={"userId": "u", "event": "E"}, auth=("any-key", ""),
                         timeout=10).status_code == 200


def with_options(folder, text: str):
    path = write_config(folder, "http://127.0.0.1:9", "http://127.0.0.1:9")
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_with_a_file_keyed_routes_take_any_host_and_server_hosts_names_the_others(tmp_path):
    with_options(tmp_path, "server: {hosts: [metrics.internal, 'collector.example:8443']}\n")
    with Server(tmp_path, "--config", "eventmap.yaml", "--workers", "1", "--intake-only") as server:
        assert requests.get(server.url + "/metrics", headers={"Host": FOREIGN}, timeout=10).status_code == 421
        for host in ("metrics.internal:9100", "COLLECTOR.example", "10.0.0.5:8088"):
            assert requests.get(server.url + "/metrics", headers={"Host": host}, timeout=10).status_code == 200
        assert server.post("/v1/track", {"userId": "u", "event": "E"}, headers={"Host": FOREIGN}).status_code == 200
        assert 'eventmap_refused_total{status="421"} 1' in requests.get(server.url + "/metrics", timeout=10).text


def test_server_hosts_are_checked_with_file_and_line(tmp_path):
    from engine.problems import ConfigError
    from engine.serve import load_serve_config
    with_options(tmp_path, "server:\n  hosts: [ok.example, 'not a name']\n")
    with pytest.raises(ConfigError) as raised:
        load_serve_config(tmp_path / "eventmap.yaml", environment())
    line = len((tmp_path / "eventmap.yaml").read_text(encoding="utf-8").splitlines())
    assert f"eventmap.yaml:{line}: server.hosts[1]: 'not a name' does not match" in str(raised.value)


# --------------------------------------------------------------------------- login back-off (shared memory)

class Clock:
    def __init__(self):
        self.now = 1_000_000.0


def fail(guard: LoginGuard, client: str, clock: Clock, times: int = 1):
    verdict = None
    for _ in range(times):
        assert guard.wait(client, clock.now) == 0
        verdict = guard.failed(client, clock.now)
    return verdict


def test_a_client_waits_after_five_wrong_logins_twice_as_long_each_time():
    guard, clock = LoginGuard(), Clock()
    assert fail(guard, "10.0.0.1", clock, FREE - 1).wait == 0
    assert fail(guard, "10.0.0.1", clock).wait == 1.0
    assert guard.wait("10.0.0.1", clock.now) == 1.0
    assert guard.wait("10.0.0.2", clock.now) == 0      # another client is not held
    waits = []
    for _ in range(12):
        clock.now += guard.wait("10.0.0.1", clock.now)
        waits.append(guard.failed("10.0.0.1", clock.now).wait)
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0] and max(waits) == MAX_WAIT
    clock.now += MAX_WAIT - 1
    assert guard.wait("10.0.0.1", clock.now) == 1.0


def test_a_login_that_works_or_an_hour_forgets_a_clients_failures():
    guard, clock = LoginGuard(), Clock()
    fail(guard, "10.0.0.1", clock, FREE - 1)
    guard.succeeded("10.0.0.1", clock.now)
    assert fail(guard, "10.0.0.1", clock, FREE - 1).in_a_row == FREE - 1
    clock.now += 3601
    assert fail(guard, "10.0.0.1", clock).in_a_row == 1


def test_an_ipv6_client_is_its_64():
    guard, clock = LoginGuard(), Clock()
    for n in range(FREE):
        fail(guard, f"2001:db8:1:2::{n + 1:x}", clock)
    assert guard.wait("2001:db8:1:2:ffff::9", clock.now) == 1.0
    assert guard.wait("2001:db8:1:3::1", clock.now) == 0


def test_many_clients_start_the_global_back_off_which_spares_clients_known_to_log_in():
    guard, clock = LoginGuard(), Clock()
    guard.succeeded("10.9.9.9", clock.now - 3600)         # the operator, an hour ago
    started = [fail(guard, f"10.1.{n // 200}.{n % 200}", clock).global_started for n in range(GLOBAL_FAILURES)]
    assert started == [False] * (GLOBAL_FAILURES - 1) + [True]
    clock.now += 10
    assert guard.wait("10.200.0.1", clock.now) == 50.0    # a new client waits for the minute to end
    assert guard.wait("10.9.9.9", clock.now) == 0         # the known one does not
    clock.now += 50
    assert guard.wait("10.200.0.1", clock.now) == 0
    assert guard.snapshot() == {"failed": GLOBAL_FAILURES, "refused": 1}


def _fail_in_a_child(guard: LoginGuard, client: str, now: float) -> None:
    for _ in range(FREE):
        guard.failed(client, now)


def test_server_processes_share_the_counts():
    guard = LoginGuard()
    child = multiprocessing.get_context("fork").Process(target=_fail_in_a_child, args=(guard, "10.0.0.1", 1e6))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert guard.wait("10.0.0.1", 1e6) == 1.0 and guard.snapshot()["failed"] == FREE


def test_the_documented_numbers():
    assert (login.FREE, login.FIRST_WAIT, login.MAX_WAIT, login.FORGET, login.GLOBAL_FAILURES, login.KNOWN_FOR) == \
           (5, 1.0, 300.0, 3600.0, 100, 86400.0)


# --------------------------------------------------------------------------- a console with a login

@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guarded")
    with_options(folder, "console: {username: admin, password: {env: TEST_CONSOLE_PASSWORD}}\n"
                         "server: {trusted_proxies: [127.0.0.1]}\n")
    env = {**environment(), "TEST_CONSOLE_PASSWORD": CONSOLE_PASSWORD}
    with Server(folder, "--config", "eventmap.yaml", "--workers", "2", "--intake-only", env=env) as server:
        yield server


def client() -> str:
    """An address of its own for one test (through the trusted proxy's X-Forwarded-For)."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def get(server: Server, path: str, address: str, password: str | None = CONSOLE_PASSWORD, **headers):
    auth = (CONSOLE_USER, password) if password is not None else None
    return requests.get(server.url + path, auth=auth, timeout=10, headers={"X-Forwarded-For": address, **headers})


def login_metrics(server: Server) -> dict[str, int]:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {name: int(value) for name, value in
            re.findall(r"^eventmap_console_login_(failures|backoff)_total (\d+)$", text, re.M)}


def test_wrong_passwords_are_answered_429_after_five_and_counted_and_logged(guarded):
    """The issue: 450 wrong passwords in 0.6 s all got a plain 401, with no delay, log line or metric."""
    attacker, before = client(), login_metrics(guarded)
    statuses = [get(guarded, "/console/", attacker, f"guess-{n}") for n in range(30)]
    assert [a.status_code for a in statuses[:FREE]] == [401] * FREE
    assert {a.status_code for a in statuses[FREE:]} == {429}
    refused = statuses[-1]
    assert refused.headers["Retry-After"] == "1" and "try again in 1 s" in refused.text
    assert "WWW-Authenticate" not in refused.headers
    assert get(guarded, "/console/", attacker).status_code == 429          # the right password waits too
    assert get(guarded, "/console/", client()).status_code == 200          # another client does not
    after = login_metrics(guarded)
    assert after["failures"] - before["failures"] == FREE
    assert after["backoff"] - before["backoff"] == 30 - FREE + 1
    lines = [line for line in guarded.output().splitlines() if attacker in line]
    assert len(lines) == FREE and "wrong username or password" in lines[-1] and "waits 1 s" in lines[-1]
    assert CONSOLE_PASSWORD not in guarded.output()


def test_no_credentials_is_the_prompt_and_not_a_failure(guarded):
    address = client()
    for _ in range(FREE + 3):
        answer = get(guarded, "/console/", address, password=None)
        assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    assert get(guarded, "/console/", address).status_code == 200


# --------------------------------------------------------------------------- the cookie

def cookie_of(answer) -> str | None:
    return answer.headers.get("Set-Cookie")


def test_no_cookie_is_set_before_the_login_works(guarded, demo):
    address = client()
    assert cookie_of(get(guarded, "/console/", address, password=None)) is None      # 401, the prompt
    assert cookie_of(get(guarded, "/console/", address, password="wrong")) is None   # 401
    for n in range(FREE):
        get(guarded, "/console/", address, password=f"wrong-{n}")
    assert get(guarded, "/console/", address).status_code == 429
    assert cookie_of(get(guarded, "/console/", address)) is None                     # 429
    assert cookie_of(requests.get(demo.url + "/console/", headers={"Host": FOREIGN}, timeout=10)) is None  # 421
    assert COOKIE in cookie_of(get(guarded, "/console/", client()))


def test_the_cookie_is_secure_over_https_from_a_trusted_proxy_only(guarded, demo):
    plain = cookie_of(get(guarded, "/console/", client()))
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    proxied = cookie_of(get(guarded, "/console/", client(), **{"X-Forwarded-Proto": "https"}))
    assert "Secure" in proxied.split("; ")
    untrusted = requests.get(demo.url + "/console/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "Secure" not in cookie_of(untrusted)   # the demo trusts no proxy


def page_token(answer) -> str:
    return answer.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def post_retry(server: Server, address: str, token: str, cookie: str, **headers):
    return requests.post(server.url + "/console/dead/retry", auth=(CONSOLE_USER, CONSOLE_PASSWORD), timeout=10,
                         data={"confirmed": "yes", "destination": "planhat", "csrf": token},
                         cookies={COOKIE: cookie}, allow_redirects=False,
                         headers={"X-Forwarded-For": address, **headers})


def test_a_token_the_attacker_chose_is_refused(guarded):
    address = client()
    chosen = "a" * 43                                              # the old rule took any 32+ characters
    assert post_retry(guarded, address, chosen, chosen).status_code == 403
    nonce = Tokens().issue(b"")                                   # well formed, signed with another key
    assert post_retry(guarded, address, nonce, nonce).status_code == 403
    answer = get(guarded, "/console/dead", address, Cookie=f"{COOKIE}={chosen}")
    issued = page_token(answer)
    assert issued != chosen and cookie_of(answer).startswith(f"{COOKIE}={issued};")   # replaced, not kept
    assert post_retry(guarded, address, issued, issued).status_code == 303


def test_behind_an_https_proxy_a_post_from_the_consoles_own_origin_is_accepted(guarded):
    address = client()
    answer = get(guarded, "/console/dead", address, **{"X-Forwarded-Proto": "https"})
    token = page_token(answer)
    host = guarded.url.removeprefix("http://")
    proxied = {"X-Forwarded-Proto": "https", "Origin": f"https://{host}"}
    assert post_retry(guarded, address, token, token, **proxied).status_code == 303
    assert post_retry(guarded, address, token, token, Origin=f"https://{host}").status_code == 403   # not said


def test_a_token_is_bound_to_the_login_it_was_issued_for():
    tokens = Tokens()
    issued = tokens.issue(login_of(("admin", "password-1")))
    assert tokens.valid(issued, login_of(("admin", "password-1")))
    for other in (login_of(("admin", "password-2")), login_of(("admin2", "password-1")), login_of(None)):
        assert not tokens.valid(issued, other)
    assert not Tokens().valid(issued, login_of(("admin", "password-1")))   # another start: another key
    nonce, _, signature = issued.partition(".")
    tampered = signature[:-1] + ("1" if signature.endswith("0") else "0")   # another last digit, always
    assert not tokens.valid(f"{nonce}.{tampered}", login_of(("admin", "password-1")))
    assert not tokens.valid(nonce, login_of(("admin", "password-1")))


def test_static_files_send_one_cache_control(guarded):
    answer = get(guarded, "/console/static/console.css", client())
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "max-age=3600"
    page = get(guarded, "/console/", client())
    assert page.headers["Cache-Control"] == "no-store"


# --------------------------------------------------------------------------- in a browser

@pytest.fixture(scope="module")
def chromium():
    with playwright_or_skip() as playwright:
        yield playwright


def test_a_rebound_name_gets_the_misdirected_page_in_a_browser(chromium, demo):
    """DNS rebinding as the browser lives it: attacker.example resolves to 127.0.0.1."""
    from browser_harness import CHROMIUM, CHROMIUM_ARGS
    browser = chromium.chromium.launch(executable_path=str(CHROMIUM),
                                       args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {FOREIGN} 127.0.0.1"])
    try:
        page = browser.new_page()
        port = port_of(demo)
        answer = page.goto(f"http://{FOREIGN}:{port}/console/events")
        assert answer.status == 421
        assert page.locator("h1").inner_text() == "421"
        assert f"does not answer for the host {FOREIGN}:{port}" in page.locator("#problem").inner_text()
        assert "server.hosts" in page.locator("#problem").inner_text()
        assert page.locator("table").count() == 0
        assert page.context.cookies() == []
        page.goto(f"http://localhost:{port}/console/events")
        assert page.locator("h1").inner_text() == "Events"
    finally:
        browser.close()


def test_a_person_who_keeps_getting_the_password_wrong_is_told_to_wait(chromium, guarded):
    browser = launch(chromium)
    try:
        context = browser.new_context(http_credentials={"username": CONSOLE_USER, "password": "not-it"},
                                      extra_http_headers={"X-Forwarded-For": client()})
        page = context.new_page()
        statuses = [page.goto(guarded.url + "/console/").status for _ in range(FREE + 1)]
        assert statuses == [401] * FREE + [429]
        assert page.locator("h1").inner_text() == "429"
        assert "too many wrong usernames or passwords: try again in" in page.locator("#problem").inner_text()
        assert context.cookies() == []
    finally:
        browser.close()
