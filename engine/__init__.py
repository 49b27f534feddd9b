"""eventmap: Segment-spec events to vendor HTTP requests, from YAML mappings.

Everything the README's "Library" section uses is importable from here
(tests/test_public_api.py keeps the two in step).
"""
from .audience import audience_identify, audience_trait
from .deliver.http import HttpClient, SavedResponses
from .deliver.http import deliver as send  # not 'deliver': that name is the engine.deliver package
from .engine import Engine
from .map.filters import register_filter
from .map.functions import register_function
from .outcome import Outcome
from .problems import ConfigError, EventmapError, Problem
from .render.request import Request
from .route import Route

__all__ = ["ConfigError", "Engine", "EventmapError", "HttpClient", "Outcome", "Problem", "Request", "Route",
           "SavedResponses", "audience_identify", "audience_trait", "register_filter", "register_function", "send"]
