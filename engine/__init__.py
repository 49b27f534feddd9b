"""eventmap: Segment-spec events to vendor HTTP requests, from YAML mappings."""
from .audience import audience_identify, audience_trait
from .engine import Engine
from .map.filters import register_filter
from .map.functions import register_function
from .outcome import Outcome
from .problems import ConfigError, EventmapError, Problem
from .render.request import Request
from .route import Route

__all__ = ["ConfigError", "Engine", "EventmapError", "Outcome", "Problem", "Request", "Route",
           "audience_identify", "audience_trait", "register_filter", "register_function"]
