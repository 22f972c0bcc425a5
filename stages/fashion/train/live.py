"""dvclive logging, one way for every training stage: `dvclive/<stage>/metrics.json` (the
latest values, a DVC metric) and `dvclive/<stage>/plots/metrics/**.tsv` (the curves, DVC
plots), x = the optimiser step counted from 1.

dvc.yaml declares both, so the stage writes no dvc.yaml of its own (`dvcyaml=False`) and
no experiment (`save_dvc_exp=False`). A resumed run appends to the curves it continues.
"""

from __future__ import annotations

from pathlib import Path

from dvclive import Live


def open_live(path: str | Path, resume: bool, main_process: bool = True) -> Live | None:
    """The stage's logger on the main process (None elsewhere); `resume` keeps its curves."""
    if not main_process:
        return None
    return Live(str(path), resume=resume, dvcyaml=False, save_dvc_exp=False)


def log_step(live: Live | None, step: int, metrics: dict[str, float]) -> None:
    """Log `metrics` at optimiser step `step` (a no-op off the main process or when empty)."""
    if live is None or not metrics:
        return
    live.step = step
    for name, value in metrics.items():
        live.log_metric(name, value)
    live.next_step()
