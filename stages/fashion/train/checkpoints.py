"""Training checkpoints of both fine-tuning stages: `step_NNNNNNN` folders of
`accelerator.save_state` (weights, optimiser, scheduler, RNG states, registered objects).

- Atomic: a checkpoint is written to `.step_NNNNNNN.tmp` and renamed into place, so an
  interrupted save never leaves a folder that looks complete.
- Rotated: the newest `keep_checkpoints` are kept; 0 keeps none (a run too short to be
  worth resuming, e.g. the seed recipe's 15 steps: its outputs hold all it made).
- Keyed: `fingerprint.json` beside them records what they were trained with
  (`fashion.train.settings.fingerprint`); a run with another fingerprint removes them and
  starts afresh, printing which part differs.
- Mirrored: with `checkpoint_mirror`, the latest one, with what lies beside it (the
  fingerprint, `best/`), is copied to lasting storage and restored from there on a fresh
  machine (`fashion.train.checkpoint_mirror`).

`BestModel` keeps, beside them, the weights of the best validation score so far.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from fashion.core.atomic import atomic_path
from fashion.core.params import PARAMS_FILE
from fashion.core.stage import PipelineError
from fashion.train.checkpoint_mirror import mirror_checkpoint, restore_checkpoint

PREFIX = "step_"
FINGERPRINT_FILE = "fingerprint.json"


def is_checkpoint(path: Path) -> bool:
    name = path.name
    return path.is_dir() and name.startswith(PREFIX) and name[len(PREFIX) :].isdigit()


def step_of(path: Path) -> int:
    return int(path.name[len(PREFIX) :])


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted names of the entries where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new), key=str)
            for d in differences(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
        ]
    return [] if old == new else [where or "fingerprint"]


class Checkpoints:
    """The checkpoints of one stage under `root`."""

    def __init__(
        self, root: str | Path, fingerprint: dict[str, Any], keep: int, mirror: str | None = None
    ) -> None:
        if keep < 0:
            raise PipelineError(f"{PARAMS_FILE}: keep_checkpoints must be 0 or more, got {keep}")
        self.root, self.keep, self.mirror = Path(root), keep, mirror
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from the file

    def list(self) -> list[Path]:
        """Checkpoint folders, oldest step first."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if is_checkpoint(p)), key=step_of)

    def _reset_if_stale(self) -> None:
        """(main process) Restore the mirror on a fresh machine; remove checkpoints of another
        fingerprint and unfinished saves; record this run's fingerprint."""
        restore_checkpoint(self.root, self.mirror, is_checkpoint)
        record = self.root / FINGERPRINT_FILE
        old = json.loads(record.read_text()) if record.is_file() else None
        if old != self.fingerprint:
            found = self.list()
            if found:
                why = (
                    "with another " + ", ".join(differences(old, self.fingerprint))
                    if old is not None
                    else f"with no {FINGERPRINT_FILE}"
                )
                print(f"{self.root}: {len(found)} checkpoint(s) trained {why}: starting afresh")
            shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(f".{PREFIX}*.tmp"):
            shutil.rmtree(leftover)
        record.write_text(json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n")

    def resume(self, accelerator: Accelerator, steps: int) -> int:
        """Load the latest checkpoint of this fingerprint at or before `steps` into the
        prepared objects; the step it was saved at (0: none, train from the start)."""
        if accelerator.is_main_process:
            self._reset_if_stale()
        accelerator.wait_for_everyone()
        usable = [p for p in self.list() if step_of(p) <= steps]
        if not usable:
            return 0
        accelerator.load_state(str(usable[-1]))
        return step_of(usable[-1])

    def save(self, accelerator: Accelerator, step: int) -> None:
        """Write the step-`step` checkpoint (every process takes part), then prune and mirror;
        nothing when none are kept."""
        if self.keep == 0:
            return
        final = self.root / f"{PREFIX}{step:07d}"
        tmp = self.root / f".{final.name}.tmp"
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            for old in self.list()[: -self.keep]:
                shutil.rmtree(old)
            if self.mirror:
                written = mirror_checkpoint(self.root, final, Path(self.mirror), is_checkpoint)
                print(f"{self.mirror}: mirrored {final.name} ({written / 1e6:.1f} MB written)")
        accelerator.wait_for_everyone()


class BestModel:
    """The weights of the best validation score so far, in `<checkpoints>/best/` with
    `best.json` ({"step", "score"}). It lives beside the checkpoints, so a run with another
    fingerprint clears it with them, and a resumed run keeps the best of the steps before."""

    def __init__(self, checkpoints_root: str | Path) -> None:
        self.dir = Path(checkpoints_root) / "best"

    def record(self) -> dict[str, Any] | None:
        path = self.dir / "best.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def resumed_at(self, step: int) -> dict[str, Any] | None:
        """The record a run resumed at `step` goes on from: one of a later step is dropped
        (those steps are trained again); None when there is none."""
        best = self.record()
        if best is not None and best["step"] > step:
            shutil.rmtree(self.dir)
            return None
        return best

    def offer(self, step: int, score: float, save: Callable[[Path], None]) -> bool:
        """Keep `save`'s weights if `score` beats the best so far (ties keep the earlier)."""
        best = self.record()
        if best is not None and score <= best["score"]:
            return False
        with atomic_path(self.dir, is_dir=True) as tmp:
            save(tmp)
            (tmp / "best.json").write_text(json.dumps({"step": step, "score": score}) + "\n")
        return True
