"""Forwarding methods that keep the signature and docstring of the method they call."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def delegates_to(method: Callable[Concatenate[Any, P], R]
                 ) -> Callable[[Callable[..., Any]], Callable[Concatenate[Any, P], R]]:
    """Type a ``(self, *args, **kwargs)`` forwarder as ``method`` (for type checkers, ``help``
    and ``inspect.signature``), so a facade states each signature once."""
    def give_signature(forwarder: Callable[..., Any]) -> Callable[Concatenate[Any, P], R]:
        own = forwarder.__qualname__, forwarder.__module__
        typed = wraps(method)(forwarder)
        typed.__qualname__, typed.__module__ = own  # tracebacks name the facade's method
        return typed
    return give_signature
