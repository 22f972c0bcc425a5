"""The stage runner: input and output paths from the command line, params.yaml checked
before any work, user errors (`PipelineError`) as a one-line message with exit code 1, and a
quick exit once a stage script has written its outputs.

A stage's `main` takes its paths as keyword arguments with `Path` defaults, e.g.
`def main(subset: Path = Path("data/subset"), out: Path = Path("data/labels"))`;
`run_stage(main)` turns each into an option (`--subset`, `--out`), so dvc.yaml's `cmd` shows
the data flow while tests call `main()` with the defaults.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class PipelineError(Exception):
    """A problem with the user's input (file, password, parameter): printed without traceback."""


def path_options(main: Callable[..., None], argv: Sequence[str] | None = None) -> dict[str, Path]:
    """The keyword arguments of `main` that default to a `Path`, read from `--name` options."""
    doc = inspect.getmodule(main).__doc__ if inspect.getmodule(main) else None
    parser = argparse.ArgumentParser(description=(doc or "").strip().split("\n")[0] or None)
    for name, param in inspect.signature(main).parameters.items():
        if isinstance(param.default, Path):
            parser.add_argument(
                f"--{name.replace('_', '-')}", dest=name, type=Path, default=param.default,
                metavar="PATH", help=f"default: {param.default}",
            )  # fmt: skip
    return vars(parser.parse_args(argv))


def run_stage(main: Callable[..., None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's `main` with its paths from the command line (`argv`, default sys.argv);
    a `PipelineError` becomes a one-line message and exit code 1.

    Run as a script (`argv` None), a stage that returns exits at once, skipping the
    interpreter's teardown of torch, transformers and diffusers: 1.2 to 1.6 s a stage, about
    20 s of the demo (bench/stage_exit.py). Its outputs are complete by then: they are
    written through `atomic_path` and closed files. Only the standard streams may hold
    buffered output, so they are flushed first."""
    paths = path_options(main, argv)
    try:
        check_params_file()
        main(**paths)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    if argv is None:
        quick_exit()


def check_params_file() -> None:
    """Check the project's params.yaml (if there is one here) against its typed model before
    a stage reads any data: a bad or unknown key is a one-line `PipelineError`."""
    from fashion.core.params import PARAMS_FILE, load_params  # it imports this module

    if PARAMS_FILE.is_file():
        load_params()


def quick_exit() -> None:
    """Exit with status 0 now: streams flushed, no interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
