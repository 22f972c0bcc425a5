"""The stage runner: a user error (`PipelineError`) becomes a one-line message and exit code 1."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's input (file, password, parameter): printed without traceback."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`; a `PipelineError` becomes a one-line message and exit code 1."""
    try:
        main()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)

