"""What every resolver needs from the request: the viewer, refused with its reason."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from app.auth import Viewer


def viewer_of(info: Info[Any, Any]) -> Viewer:
    """The authenticated viewer, or the authentication error that stopped it."""
    context = info.context
    if context.auth_error is not None:
        raise context.auth_error
    return context.viewer


def app_state(info: Info[Any, Any]) -> Any:
    """Process-wide objects (event bus, enrichment, rate limiter) set up at start."""
    return info.context.request.app.state
