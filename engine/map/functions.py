"""The escape hatch: small Python functions a mapping can call by name.

Some vendors need a step the YAML language deliberately cannot say. Register
a function here (or from your own code before loading an Engine) and call it
from YAML with ``{"@function": name, "@args": {...}}``; it receives the
evaluated ``@args`` as keyword arguments.
"""
from __future__ import annotations

from collections.abc import Callable

FUNCTIONS: dict[str, Callable] = {}


def register_function(name: str):
    """Decorator: make ``fn`` callable from mappings as ``@function: name``."""
    def add(fn: Callable) -> Callable:
        if name in FUNCTIONS and FUNCTIONS[name] is not fn:
            raise ValueError(f"a mapping function named '{name}' is already registered")
        FUNCTIONS[name] = fn
        return fn
    return add
