"""The checkpoint mirror: the latest checkpoint with what lies beside it (`best/`), written
file by file so a save costs about one checkpoint and deletes none, and restorable to the
newest complete checkpoint after an interruption at any point of a save.

Real checkpoints: a tiny model and its AdamW state saved by accelerate through the stages'
`Checkpoints`, and resumed by it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from fashion.core.stage import PipelineError
from fashion.train.checkpoint_mirror import mirror_checkpoint, restore_checkpoint
from fashion.train.checkpoints import FINGERPRINT_FILE, BestModel, Checkpoints
from fashion.train.checkpoints import is_checkpoint as is_step

FINGERPRINT = {"params": {"lr": 0.1}, "source": "tiny"}
MANIFEST = ".mirror/manifest.json"
# the calls that change files: a disconnect may come before any of them (rmtree's own
# unlinks included: a folder half removed)
STORAGE_OPS = ((shutil, "copyfile"), (os, "rename"), (os, "replace"), (os, "unlink"),
               (shutil, "rmtree"))  # fmt: skip


class Disconnect(OSError):
    """Drive's mount going away in the middle of a save."""


def checkpoint(root: Path, name: str, payload: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "state.bin").write_text(payload)
    (root / FINGERPRINT_FILE).write_text("{}")
    return root / name


def test_mirror_keeps_the_latest_checkpoint_and_the_root_files(tmp_path: Path) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    mirror_checkpoint(root, checkpoint(root, "step_1", "one"), mirror, is_step)
    mirror_checkpoint(root, checkpoint(root, "step_2", "two"), mirror, is_step)
    assert sorted(p.name for p in mirror.iterdir()) == [FINGERPRINT_FILE, "step_2"]
    # the previous checkpoint waits beside it as the next save's draft; nothing else
    assert sorted(p.name for p in mirror.parent.iterdir()) == [".stage.spare", "stage"]
    manifest = json.loads((mirror / "step_2" / MANIFEST).read_text())
    assert manifest["checkpoint"] == "step_2"
    assert sorted(manifest["files"]) == [f".mirror/root/{FINGERPRINT_FILE}", "state.bin"]


def test_restore_only_where_no_local_checkpoint_is(tmp_path: Path) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    mirror_checkpoint(root, checkpoint(root, "step_2", "two"), mirror, is_step)
    assert not restore_checkpoint(root, mirror, is_step)  # the local one is newer or equal
    assert not restore_checkpoint(tmp_path / "elsewhere", None, is_step)
    assert not restore_checkpoint(tmp_path / "elsewhere", tmp_path / "nothing", is_step)
    fresh = tmp_path / "fresh"
    assert restore_checkpoint(fresh, mirror, is_step)
    assert sorted(p.name for p in fresh.iterdir()) == [FINGERPRINT_FILE, "step_2"]
    assert (fresh / "step_2" / "state.bin").read_text() == "two"


def test_best_is_mirrored_with_its_checkpoint_and_restored(tmp_path: Path) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    best = BestModel(root)
    best.offer(1, 0.5, lambda d: (d / "weights.bin").write_text("step 1"))
    mirror_checkpoint(root, checkpoint(root, "step_1", "one"), mirror, is_step)
    best.offer(2, 0.9, lambda d: (d / "weights.bin").write_text("step 2"))
    mirror_checkpoint(root, checkpoint(root, "step_2", "two"), mirror, is_step)
    fresh = tmp_path / "fresh"
    (fresh / "best").mkdir(parents=True)  # a leftover of no checkpoint's: replaced
    (fresh / "best" / "stale.bin").write_text("stale")
    assert restore_checkpoint(fresh, mirror, is_step)
    assert sorted(p.name for p in (fresh / "best").iterdir()) == ["best.json", "weights.bin"]
    assert (fresh / "best" / "weights.bin").read_text() == "step 2"
    assert BestModel(fresh).record() == {"step": 2, "score": 0.9}


def test_a_mirror_of_the_earlier_layout_is_restored(tmp_path: Path) -> None:
    """A plain copy (the root's files and one checkpoint folder), also the `.old` copy that a
    disconnect between the earlier code's two renames left alone."""
    legacy = tmp_path / "drive" / "stage"
    checkpoint(legacy, "step_4", "four")
    assert restore_checkpoint(tmp_path / "a", legacy, is_step)
    assert (tmp_path / "a" / "step_4" / "state.bin").read_text() == "four"
    assert (tmp_path / "a" / FINGERPRINT_FILE).is_file()
    legacy.rename(legacy.with_name("stage.old"))
    assert restore_checkpoint(tmp_path / "b", legacy, is_step)
    assert (tmp_path / "b" / "step_4" / "state.bin").read_text() == "four"
    # and the first save of this layout takes the plain copy over
    root = tmp_path / "b"
    mirror_checkpoint(root, checkpoint(root, "step_5", "five"), legacy, is_step)
    assert restore_checkpoint(tmp_path / "c", legacy, is_step)
    assert (tmp_path / "c" / "step_5" / "state.bin").read_text() == "five"


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ("{not json", "Expecting property name"),
        ('{"checkpoint": "../step_1", "files": {}}', "bad checkpoint name '../step_1'"),
        ('{"checkpoint": "step_1", "files": {"../x": [1, "ab"]}}', "'../x' outside the unit"),
        ('{"checkpoint": "step_1", "files": {"x": 1}}', "'x' without \\[size, sha256\\]"),
    ],
    ids=["json", "name", "path", "entry"],
)
def test_a_damaged_manifest_is_a_clear_error(tmp_path: Path, manifest: str, why: str) -> None:
    root, mirror = tmp_path / "local", tmp_path / "drive" / "stage"
    mirror_checkpoint(root, checkpoint(root, "step_1", "one"), mirror, is_step)
    (mirror / "step_1" / MANIFEST).write_text(manifest)
    with pytest.raises(PipelineError, match=rf"step_1/\.mirror/manifest\.json: not a .*{why}"):
        restore_checkpoint(tmp_path / "fresh", mirror, is_step)


# ----------------------------------------------------------- real checkpoints, interrupted


class Run:
    """A tiny model trained one step at a time, checkpointed (with a `best/` beside) by the
    stages' `Checkpoints` into `root` and mirrored to `mirror`."""

    def __init__(self, accelerator: Accelerator, root: Path, mirror: Path) -> None:
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        self.accelerator = accelerator
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.checkpoints = Checkpoints(root, FINGERPRINT, keep=2, mirror=str(mirror))
        assert self.checkpoints.resume(accelerator, steps=100) == 0  # as a stage starts
        self.best = BestModel(root)
        self.weights: dict[int, torch.Tensor] = {}  # the weights saved at each step
        self.score = 0.0

    def step(self, step: int, best_changes: bool = True) -> None:
        self.model(torch.randn(8, 64)).square().mean().backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.weights[step] = self.model.weight.detach().clone()
        if best_changes:
            weights = self.model.weight.detach().clone()
            self.score += 1  # better every time
            self.best.offer(step, self.score, lambda d: torch.save(weights, d / "w.pt"))

    def save(self, step: int) -> None:
        self.checkpoints.save(self.accelerator, step)

    def resume_elsewhere(self, root: Path) -> int:
        """A fresh machine: resume from the mirror into `root`; the step resumed."""
        self.checkpoints = Checkpoints(root, FINGERPRINT, keep=2, mirror=self.checkpoints.mirror)
        self.best = BestModel(root)
        return self.checkpoints.resume(self.accelerator, steps=100)


@pytest.fixture
def accelerator() -> Accelerator:
    return Accelerator(cpu=True)


def interrupt_at(monkeypatch: pytest.MonkeyPatch, k: int, torn: bool) -> Callable[[], int]:
    """Make the k-th change of a file raise (with `torn`, a copy writes half its bytes
    first); returns how many changes were made so far."""
    calls = 0

    def wrap(module: object, name: str) -> None:
        original = getattr(module, name)

        def op(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == k:
                if torn and name == "copyfile":
                    src, dst = (Path(a) for a in args[:2])
                    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
                raise Disconnect(f"disconnected at {name} #{k}")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, op)

    for module, name in STORAGE_OPS:
        wrap(module, name)
    return lambda: calls


@pytest.mark.parametrize("again", [False, True], ids=["next-step", "same-step-again"])
def test_an_interrupted_save_at_any_point_leaves_the_newest_complete_checkpoint(
    accelerator: Accelerator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    again: bool,
) -> None:
    """Saves at steps 1 and 2, then a save of step 3 (or of step 2 again) interrupted at its
    k-th storage change, for every k: a fresh machine resumes from step 2 or 3, never 0, on
    exactly the weights and best/ saved at that step; and the next save, uninterrupted,
    mirrors its own step."""
    template = tmp_path / "template"
    run = Run(accelerator, template / "local", template / "drive" / "stage")
    for step in (1, 2):
        run.step(step)
        run.save(step)
    third = 2 if again else 3
    saved = [run.weights[2]]  # what a restore may hold: step 2's save, or the new one
    run.step(third)
    saved.append(run.weights[third])
    state = {k: v.clone() for k, v in run.model.state_dict().items()}
    optimizer_state = run.optimizer.state_dict()
    completed, k = False, 0
    while not completed:
        k += 1
        case = tmp_path / f"k{k}"  # the state after step 2's save, where step 3's is tried
        shutil.copytree(template, case)
        run.checkpoints = Checkpoints(
            case / "local", FINGERPRINT, keep=2, mirror=str(case / "drive" / "stage")
        )
        run.best = BestModel(case / "local")
        with monkeypatch.context() as patch:
            count = interrupt_at(patch, k, torn=k % 2 == 0)
            try:
                run.save(third)
                completed = True
            except (Disconnect, shutil.Error):  # copytree gathers its copies' errors
                pass
            assert completed == (count() < k)
        resumed = run.resume_elsewhere(case / "fresh")
        assert resumed in (2, third), f"k={k}: resumed from {resumed}"
        which = [torch.equal(run.model.weight.detach(), w) for w in saved]
        assert which in ([True, False], [False, True]), f"k={k}: weights of no save"
        assert completed <= which[1] and resumed == (third if which[1] else 2)
        # best/ is the one saved with that checkpoint
        assert torch.equal(torch.load(case / "fresh" / "best" / "w.pt"), saved[which[1]])
        assert BestModel(case / "fresh").record()["step"] == resumed
        # the next save (uninterrupted) from the interrupted state mirrors its own step
        run.model.load_state_dict(state)
        run.optimizer.load_state_dict(optimizer_state)
        run.checkpoints = Checkpoints(
            case / "local", FINGERPRINT, keep=2, mirror=str(case / "drive" / "stage")
        )
        run.save(4)
        assert run.resume_elsewhere(case / "fresh-after") == 4
        shutil.rmtree(case)
    assert k > 10  # every change of a real save was interrupted once


def watch(folder: Path, links: Path) -> dict[Path, int]:
    """A hard link in `links` to each file of `folder`, with its size: a file deleted or
    replaced in `folder` afterwards leaves its link alone (link count 1)."""
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir()
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    for i, path in enumerate(files):
        os.link(path, links / str(i))
    return {links / str(i): path.stat().st_size for i, path in enumerate(files)}


def gone(watched: dict[Path, int]) -> int:
    """The bytes of the watched files deleted or replaced since (Drive's bin)."""
    return sum(size for link, size in watched.items() if link.stat().st_nlink == 1)


def test_a_save_writes_about_one_checkpoint_and_deletes_none(
    accelerator: Accelerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over N saves: each writes about one checkpoint (the unchanged best/ only once per
    copy), and no file of the mirror is deleted or replaced (what Drive would move to its
    bin), but for the few bytes of a manifest."""
    drive = tmp_path / "drive"
    run = Run(accelerator, tmp_path / "local", drive / "stage")
    written: list[int] = []
    copyfile = shutil.copyfile

    def counting(src: Path, dst: Path, **kwargs: object) -> object:
        written.append(Path(src).stat().st_size)
        return copyfile(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", counting)
    per_save, binned = [], []
    n = 6
    for step in range(1, n + 1):
        run.step(step, best_changes=step == 1)
        watched = watch(drive, tmp_path / "links")
        written.clear()
        run.save(step)
        per_save.append(sum(written))
        binned.append(gone(watched))
    local = tmp_path / "local"
    ckpt = sum(p.stat().st_size for p in (local / f"step_{n:07d}").rglob("*") if p.is_file())
    best = sum(p.stat().st_size for p in (local / "best").rglob("*") if p.is_file())
    fingerprint = (local / FINGERPRINT_FILE).stat().st_size
    print(f"checkpoint {ckpt} B, best {best} B; written per save {per_save}; binned {binned}")
    # the first save also writes the readable fingerprint at the top; best/ goes into each
    # of the two copies once, then is never written again
    assert per_save[0] == ckpt + best + 2 * fingerprint
    assert per_save[1] == ckpt + best + fingerprint
    assert per_save[2:] == [ckpt] * (n - 2)
    assert max(binned) < 2048  # a manifest, not a checkpoint
