"""``eventmap serve``: a Segment-compatible collector with vendor webhooks, health and metrics."""
from .app import Collector
from .config import ServeConfig, demo_config, load_serve_config
from .source_worker import SourceWorker

__all__ = ["Collector", "ServeConfig", "SourceWorker", "demo_config", "load_serve_config"]
