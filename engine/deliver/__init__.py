"""Talking to vendors: one HTTP client for lookups and for sending, and its retry policy."""
from .http import HttpClient, Response, SavedResponses, TransportError, deliver, is_retryable

__all__ = ["HttpClient", "Response", "SavedResponses", "TransportError", "deliver", "is_retryable"]
