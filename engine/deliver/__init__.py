"""Talking to vendors: one HTTP client for lookups and sending, and the durable delivery workers."""
from ..answers import TransportError, is_retryable
from .dry_run import DryRunClient
from .http import HttpClient, Response, SavedResponses, deliver
from .limits import RateLimiter
from .retry import RetryPolicy
from .runner import Runner, destination_workers, drain, new_owner, progress_line
from .worker import DestinationWorker

__all__ = ["DestinationWorker", "DryRunClient", "HttpClient", "RateLimiter", "Response", "RetryPolicy", "Runner",
           "SavedResponses", "TransportError", "deliver", "destination_workers", "drain", "is_retryable",
           "new_owner", "progress_line"]
