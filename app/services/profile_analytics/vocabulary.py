"""What profile engagement events must carry, checked at ingestion: a click names the link it
followed (`properties.target`), so clicks can be told apart by target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.vocabulary import CLICK_TARGET_MAX_CHARS, PROFILE_CLICKED


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """(field, problem) of the first thing wrong, or None."""
    if event_type != PROFILE_CLICKED:
        return None
    target = properties.get("target") if isinstance(properties, Mapping) else None
    if not isinstance(target, str) or not target.strip():
        return "properties.target", f"{PROFILE_CLICKED} names what was clicked in properties.target (e.g. \"website\")"
    if len(target) > CLICK_TARGET_MAX_CHARS or not target.isprintable():
        return "properties.target", f"properties.target is printable text of at most {CLICK_TARGET_MAX_CHARS} characters"
    return None
