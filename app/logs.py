"""How much pulsegraph says. Quiet by default: a newcomer's first screen is the banner, not
library chatter. `PULSEGRAPH_LOG_LEVEL` (or `--verbose`, which means `info`) turns it up.

- `warning` (the default): warnings and errors only, from anyone.
- `info`: pulsegraph's own progress and uvicorn's request log; libraries stay at warning.
- `debug`: everything, including the embedded PostgreSQL's command lines and initdb output.
"""

from __future__ import annotations

import logging
import os
import warnings

LEVEL_ENV = "PULSEGRAPH_LOG_LEVEL"
LEVELS = ("critical", "error", "warning", "info", "debug")
DEFAULT_LEVEL = "warning"
OWN_LOGGERS = ("pulsegraph", "uvicorn")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def level_name(verbose: bool = False) -> str:
    """The level asked for: --verbose wins over a quieter PULSEGRAPH_LOG_LEVEL."""
    name = os.environ.get(LEVEL_ENV, "").strip().lower() or DEFAULT_LEVEL
    if name not in LEVELS:
        name = DEFAULT_LEVEL
    if verbose and LEVELS.index(name) < LEVELS.index("info"):
        return "info"
    return name


def configure(name: str) -> None:
    """Set pulsegraph's and the libraries' levels for this process (and, through the
    environment, for the API processes `serve --workers N` spawns)."""
    os.environ[LEVEL_ENV] = name
    level = logging.getLevelName(name.upper())
    libraries = level if level <= logging.DEBUG else max(level, logging.WARNING)
    logging.basicConfig(level=libraries, format=FORMAT, force=True)
    for logger in OWN_LOGGERS:
        logging.getLogger(logger).setLevel(level)
    if level > logging.DEBUG:
        # platformdirs warns once per process that XDG_RUNTIME_DIR is unset when the
        # embedded PostgreSQL picks its lock folder; it falls back to /tmp, which is fine.
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
