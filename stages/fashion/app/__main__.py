"""`python -m fashion.app [--root .] [--port 7860] [--no-browser]`: serve the page on this
machine (127.0.0.1) over the project's outputs, and open it in the browser."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashion.app", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("."), help="the project's folder")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no-browser", action="store_true", help="serve without opening it")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports
    from fashion.app.outputs import AppError, read_outputs
    from fashion.app.search import warm_up
    from fashion.app.ui import THEME, build

    # the models record their local paths relative to the project's folder: run there
    try:
        os.chdir(args.root)
    except OSError as err:
        print(f"error: {args.root}: {err.strerror}", file=sys.stderr)
        return 1
    try:
        outputs = read_outputs(".")
    except AppError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        warm_up(outputs)
    except AppError as err:  # the page says it again where it matters
        print(f"warning: {err}", file=sys.stderr)
    build(outputs).launch(
        server_name="127.0.0.1", server_port=args.port, inbrowser=not args.no_browser, theme=THEME
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
