"""The settings every test process and every server process it starts agree on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.settings import Settings

# The secret the test session signs tokens with; server processes started by tests get it too,
# so a token issued in the test process is valid against them.
TEST_JWT_SECRET = "test-secret-" + "x" * 40


def settings_with(settings: Settings, **changes: Any) -> Settings:
    """A copy of the session's settings with a few fields changed (settings are frozen)."""
    return replace(settings, **changes)
