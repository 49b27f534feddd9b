"""eventmap: Segment-spec events to vendor HTTP requests, from YAML mappings.

Everything the README's "Library" section uses is importable from here
(tests/test_public_api.py keeps the two in step). Each name is imported when it is
first used, not with the package: ``eventmap --version`` and ``--help`` must not
load the whole engine (tests/test_cli_start.py).
"""
from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False   # typing.TYPE_CHECKING, without importing typing (mypy reads this name the same way)

__version__ = "0.1.0"   # the one definition: pyproject.toml reads it ([tool.setuptools.dynamic])

# name -> (module, attribute): where each public name lives
_PUBLIC = {
    "audience_identify": (".audience", "audience_identify"),
    "audience_trait": (".audience", "audience_trait"),
    "ConfigError": (".problems", "ConfigError"),
    "Engine": (".engine", "Engine"),
    "EventmapError": (".problems", "EventmapError"),
    "HttpClient": (".deliver.http", "HttpClient"),
    "Outcome": (".outcome", "Outcome"),
    "Problem": (".problems", "Problem"),
    "register_filter": (".map.filters", "register_filter"),
    "register_function": (".map.functions", "register_function"),
    "Request": (".render.request", "Request"),
    "Route": (".route", "Route"),
    "SavedResponses": (".deliver.http", "SavedResponses"),
    "send": (".deliver.http", "deliver"),   # not 'deliver': that name is the engine.deliver package
}

__all__ = ["ConfigError", "Engine", "EventmapError", "HttpClient", "Outcome", "Problem", "Request", "Route",
           "SavedResponses", "audience_identify", "audience_trait", "register_filter", "register_function", "send"]


def __getattr__(name: str):
    """``from engine import Engine`` (and ``engine.Engine``) import the module holding the name, once."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    value = getattr(import_module(module, __name__), attribute)
    globals()[name] = value   # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:   # what the names are, for type checkers and editors
    from .audience import audience_identify, audience_trait
    from .deliver.http import HttpClient, SavedResponses
    from .deliver.http import deliver as send
    from .engine import Engine
    from .map.filters import register_filter
    from .map.functions import register_function
    from .outcome import Outcome
    from .problems import ConfigError, EventmapError, Problem
    from .render.request import Request
    from .route import Route
