"""``repr()`` and ``str()`` of everything that holds settings mask the secrets in them, and a PostgreSQL
URL is masked even when it cannot be parsed.

A repr ends up in logs, tracebacks and debuggers: a route used to print every
credential of its destination. Here every object the server and the delivery
workers build from a configuration full of secrets is printed, and no secret
may show, in any of the forms the masker knows (raw, percent-encoded, base64).
"""
from __future__ import annotations

import threading

import pytest
from serve_harness import GLADLY_TOKEN, HOOK_PASSWORD, MOBILE_KEY, WRITE_KEY, environment, write_config

from engine.deliver.http import HttpClient
from engine.deliver.runner import Runner
from engine.deliver.worker import DestinationWorker
from engine.intake import Intake
from engine.load.config import load_config
from engine.paths import MAPPINGS_DIR
from engine.problems import ConfigError
from engine.secrets import needles
from engine.serve import Collector, SourceWorker
from engine.serve.config import load_serve_config
from engine.serve.setup import build
from engine.store import open_store
from engine.store.urls import masked_url, url_secrets

PG_PASSWORD = "pg-pass-71c9"
SECRETS = [WRITE_KEY, MOBILE_KEY, HOOK_PASSWORD, GLADLY_TOKEN, "planhat-token", "crisp-key", PG_PASSWORD]


def assert_masked(text: str) -> None:
    for secret in SECRETS:
        for form in needles(secret):
            assert form not in text, f"{secret!r} shows (as {form!r}) in {text[:300]}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repr")
    path = write_config(folder, "http://127.0.0.1:9", "http://127.0.0.1:9/gladly")
    path.write_text(path.read_text().replace("storage: sqlite:///events.db",
                                             f"storage: postgresql://eventmap:{PG_PASSWORD}@127.0.0.1:9/eventmap"))
    return build(load_serve_config(path, environment()), MAPPINGS_DIR, environment())


def test_routes_print_their_settings_with_every_credential_masked(setup):
    [planhat, crisp] = setup.routes
    assert "tenant_token': '***'" in repr(planhat) and "base_url': 'http://127.0.0.1:9/planhat'" in repr(planhat)
    assert "api_key': '***'" in repr(crisp) and "website_id': 'site-1'" in repr(crisp)
    for route in setup.routes:
        assert_masked(repr(route))
        assert_masked(str(route))


def test_everything_built_from_the_configuration_prints_no_secret(setup, tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/repr.db")
    intake = Intake(setup.engine, setup.routes, store)
    client = HttpClient(timeout=1)
    for route in setup.routes:   # settings are bound into compiled actions on first use
        setup.engine.render({"type": "identify", "userId": "u", "traits": {"email": "a@b.c"}}, route)
    destination_workers = [DestinationWorker(route, store, client, owner="me") for route in setup.routes]
    source_workers = [SourceWorker(f"source:{name}", source, intake, store, client)
                      for name, source in setup.sources.items()]
    objects = [setup, setup.config, setup.config.storage, setup.config.write_keys, *setup.config.webhooks.values(),
               *setup.sources.values(), *(route.destination for route in setup.routes), setup.engine,
               intake, *destination_workers, *source_workers,
               Runner(destination_workers, store, owner="me", stop=threading.Event()),
               Collector(setup.config, setup.engine, setup.routes, setup.open_store),
               load_config(setup.config.file)[0]]
    for thing in objects:
        assert_masked(repr(thing))
        assert_masked(str(thing))
    assert_masked(setup.describe())
    assert "eventmap:***@127.0.0.1:9" in setup.describe()
    store.close()


MALFORMED = [
    f"postgresql://eventmap:{PG_PASSWORD}/eventmap",                       # host forgotten: the password reads as a port
    f"postgresql://eventmap:{PG_PASSWORD}@127.0.0.1:notaport/eventmap",
    f"postgresql://eventmap:{PG_PASSWORD}%zz@127.0.0.1/eventmap",          # bad percent-encoding
    f"postgresql://eventmap:{PG_PASSWORD}@[::1/eventmap",                  # unclosed IPv6 bracket
    f"postgresql://eventmap:{PG_PASSWORD[:4]}/{PG_PASSWORD[4:]}@127.0.0.1:1/eventmap",   # '/' inside the password
    f"postgresql://eventmap:{PG_PASSWORD}@127.0.0.1:1/eventmap?sslmode=nonsense",
    f"postgresql://eventmap@127.0.0.1:1/eventmap?password={PG_PASSWORD}&sslmode=nonsense",
    f"postgresql://eventmap:{PG_PASSWORD}@127.0.0.1:1,:x/eventmap",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_postgresql_url_never_shows_its_password(url):
    shown = masked_url(url)
    assert PG_PASSWORD not in shown and PG_PASSWORD[4:] not in shown and "***" in shown
    with pytest.raises(ConfigError) as caught:
        open_store(url, connect_timeout=2)
    message = str(caught.value)
    assert PG_PASSWORD not in message and PG_PASSWORD[4:] not in message, message
    assert "storage" in message


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://eventmap:pw@db.internal:5432/eventmap", "postgresql://eventmap:***@db.internal:5432/eventmap"),
    ("postgresql://eventmap@db.internal/eventmap", "postgresql://eventmap@db.internal/eventmap"),
    ("postgresql://u:pw@h1:5432,h2:5433/db?sslmode=require&password=pw2",
     "postgresql://u:***@h1:5432,h2:5433/db?sslmode=require&password=***"),
    ("sqlite:///var/eventmap.db", "sqlite:///var/eventmap.db"),
    ("not a url: pw", "***"),
])
def test_a_well_formed_url_keeps_everything_but_the_password(url, shown):
    assert masked_url(url) == shown


def test_url_secrets_knows_the_password_raw_and_decoded():
    assert set(url_secrets("postgresql://u:p%40ss@h/db")) == {"p%40ss", "p@ss"}
