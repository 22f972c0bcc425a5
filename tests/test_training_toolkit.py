"""fashion.train: step-indexed batches, checkpoints (atomic, rotated, keyed by a fingerprint)
and the shared params rules, on a one-layer model (the stages' own runs: test_clip_stages.py,
test_sd_training.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from fashion.core.stage import PipelineError
from fashion.train.batches import StepBatches, StepDataset, worker_start_method
from fashion.train.checkpoints import FINGERPRINT_FILE, Checkpoints
from fashion.train.optimizer import adamw
from fashion.train.settings import (
    fingerprint,
    fit_batch_size,
    schedule_steps,
    training_rows,
    training_steps,
)


def test_batch_k_is_a_function_of_seed_and_k() -> None:
    ordered = StepBatches(50, 4, 2, 1, seed=3, grad_accum=2)
    first = [ordered.rows(k) for k in range(40)]
    jumping = StepBatches(50, 4, 2, 1, seed=3, grad_accum=2)
    for k in [17, 3, 39, 0, 22]:  # any order, as a resumed run or a DataLoader worker asks
        np.testing.assert_array_equal(jumping.rows(k), first[k])
    assert not np.array_equal(StepBatches(50, 4, 2, 1, seed=4).rows(0), first[0])


def test_processes_split_each_global_batch_and_epochs_hold_whole_steps() -> None:
    ranks = [StepBatches(50, 4, 2, r, seed=0, grad_accum=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == 3 and ranks[0].per_epoch == 6  # 50 // (8 x 2) steps
    epoch = np.concatenate([b.rows(k) for k in range(6) for b in ranks])
    assert len(set(epoch.tolist())) == 48  # no row twice within an epoch
    assert ranks[0].epoch_of(2) == 0 and ranks[0].epoch_of(3) == 1
    with pytest.raises(PipelineError, match="fewer than one global batch"):
        StepBatches(7, 4, 2, 0, seed=0)
    dataset = StepDataset(ranks[1], lambda rows: rows.sum())
    assert dataset[5] == ranks[1].rows(5).sum()


def test_by_epochs_the_last_partial_batch_is_a_step() -> None:
    # the seed recipe: 20 images at batch 8 are 3 steps an epoch, the third of 4 images
    one = StepBatches(20, 8, 1, 0, seed=0, keep_remainder=True)
    assert one.steps_per_epoch == 3
    for epoch in range(2):
        batches = [one.rows(epoch * 3 + k) for k in range(3)]
        assert [len(b) for b in batches] == [8, 8, 4]
        assert sorted(np.concatenate(batches).tolist()) == list(range(20))  # each row once
    assert StepBatches(20, 8, 1, 0, seed=0).steps_per_epoch == 2  # by steps: full batches only


@pytest.mark.parametrize(
    ("n", "batch", "world", "accum"), [(20, 4, 2, 2), (3, 4, 2, 2), (9, 2, 2, 1)]
)
def test_a_partial_step_gives_every_process_equal_batches(n, batch, world, accum) -> None:
    ranks = [StepBatches(n, batch, world, r, 0, accum, keep_remainder=True) for r in range(world)]
    epoch = [[b.rows(k) for b in ranks] for k in range(ranks[0].per_epoch)]
    for micro in epoch:  # processes gather equal row counts
        assert len({len(rows) for rows in micro}) == 1 and len(micro[0]) > 0
    seen = np.concatenate([rows for micro in epoch for rows in micro])
    assert set(seen.tolist()) == set(range(n))  # every row trained, topped up from the start
    assert len(seen) < n + world * accum


def test_n_images_and_epochs_set_the_length() -> None:
    rows = np.arange(100, 160)
    chosen = training_rows("x", rows, 20, seed=0)
    assert len(chosen) == 20 and set(chosen) <= set(rows) and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, training_rows("x", rows, 20, seed=0))
    assert not np.array_equal(chosen, training_rows("x", rows, 20, seed=1))
    assert training_rows("x", rows, "all", 0) is rows
    with pytest.warns(UserWarning, match=r"x.n_images=99, but the training split holds 60"):
        assert len(training_rows("x", rows, 99, 0)) == 60
    with pytest.raises(PipelineError, match=r"x.n_images must be a positive integer or all"):
        training_rows("x", rows, 0, 0)
    assert training_steps("x", None, 5, steps_per_epoch=3) == 15
    assert training_steps("x", 10, 5, steps_per_epoch=3) == 10  # steps caps
    assert training_steps("x", 10, None, steps_per_epoch=3) == 10
    with pytest.raises(PipelineError, match="set steps, epochs or both"):
        training_steps("x", None, None, 3)
    with pytest.raises(PipelineError, match="x.epochs must be a positive integer or null"):
        training_steps("x", 5, 0, 3)
    assert fit_batch_size("x", 8, 20, 1, 1) == 8
    with pytest.warns(UserWarning, match=r"x.batch_size=16 x 2 process\(es\) x grad_accum 1"):
        assert fit_batch_size("x", 16, 20, 2, 1) == 10


def test_the_schedule_length() -> None:
    assert schedule_steps("x", 5, None) == 5 and schedule_steps("x", 5, 8) == 8
    with pytest.raises(PipelineError, match="x.schedule_steps"):
        schedule_steps("x", 5, 4)
    params = {"steps": 5, "lr": 1e-3, "num_workers": 2, "eval_every": 1, "keep_checkpoints": 1}
    key = fingerprint(params, 8, "data", 1)
    assert key == {
        "params": {"lr": 1e-3, "schedule_steps": 8},
        "source": "data",
        "num_processes": 1,
    }


class Run:
    """A one-layer model, its optimiser and scheduler prepared by an `Accelerator`."""

    def __init__(self, seed: int = 0) -> None:
        AcceleratorState._reset_state(True)
        self.accelerator = Accelerator()
        torch.manual_seed(seed)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)

    def step(self) -> None:
        loss = self.model(torch.randn(4, 3)).square().mean()  # draws from the RNG, as training
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()


def test_checkpoints_rotate_resume_and_restart_on_another_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ckpt"
    run = Run()
    checkpoints = Checkpoints(root, {"params": {"lr": 0.1}}, keep=2)
    assert checkpoints.resume(run.accelerator, 10) == 0
    for step in range(1, 4):
        run.step()
        checkpoints.save(run.accelerator, step)
    assert [p.name for p in checkpoints.list()] == ["step_0000002", "step_0000003"]
    (root / ".step_0000004.tmp").mkdir()  # a save cut short: never resumed, removed
    run.step()
    expected = run.model.weight.detach().clone()

    again = Run(seed=1)
    resumed = Checkpoints(root, {"params": {"lr": 0.1}}, keep=2)
    assert resumed.resume(again.accelerator, 10) == 3
    assert not (root / ".step_0000004.tmp").exists()
    again.step()  # the RNG state came back with the checkpoint: the same draw as `run`'s
    torch.testing.assert_close(again.model.weight, expected, rtol=0, atol=0)
    assert Checkpoints(root, {"params": {"lr": 0.1}}, keep=2).resume(Run().accelerator, 2) == 2

    capsys.readouterr()
    other = Checkpoints(root, {"params": {"lr": 0.2}}, keep=2)
    assert other.resume(Run().accelerator, 10) == 0
    assert "2 checkpoint(s) trained with another params.lr: starting afresh" in (
        capsys.readouterr().out
    )
    assert other.list() == [] and (root / FINGERPRINT_FILE).is_file()


def test_an_fp16_overflow_step_is_seen_as_skipped() -> None:
    """Under fp16 mixed precision a grad scaler drives the optimiser; accelerate must see an
    overflowing step as skipped (so the prepared learning-rate schedule holds still), which
    a fused optimiser hides. A CPU grad scaler stands in for the GPU's."""
    from accelerate.optimizer import AcceleratedOptimizer

    Accelerator()  # accelerate's state is fresh: conftest's fresh_accelerator_state
    model = torch.nn.Linear(4, 2)
    scaler = torch.amp.GradScaler("cpu")
    optimizer = AcceleratedOptimizer(
        adamw(model.parameters(), "cpu", "fp16", lr=1e-2), device_placement=False, scaler=scaler
    )
    before = model.weight.detach().clone()
    scaler.scale(model(torch.full((3, 4), float("inf"))).sum()).backward()
    optimizer.step()
    assert optimizer.step_was_skipped and torch.equal(model.weight, before)
    assert adamw(model.parameters(), "cpu", "bf16", lr=1e-2).defaults["fused"]


def test_adamw_is_fused_on_cpu_and_makes_the_plain_update() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    twin = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    groups = [{"params": list(model.parameters())[:2], "weight_decay": 0.1}]
    groups.append({"params": list(model.parameters())[2:], "weight_decay": 0.0})
    fused = adamw(groups, torch.device("cpu"), lr=1e-2)
    plain = torch.optim.AdamW(
        [{"params": twin[:2], "weight_decay": 0.1}, {"params": twin[2:], "weight_decay": 0.0}],
        lr=1e-2,
    )
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    x = torch.randn(16, 6)
    for _ in range(3):
        for params, opt in ((list(model.parameters()), fused), (twin, plain)):
            h = torch.nn.functional.gelu(x @ params[0].T + params[1]) @ params[2].T + params[3]
            opt.zero_grad()
            h.square().mean().backward()
            opt.step()
    for mine, reference in zip(model.parameters(), twin, strict=True):
        torch.testing.assert_close(mine, reference)
    # no fused kernel there under the torch floor: the default update
    assert not adamw([torch.nn.Parameter(torch.ones(2))], "mps", lr=1e-3).defaults["fused"]


class Unpicklable(torch.utils.data.Dataset):
    """A dataset that cannot be sent to a worker by pickling, as 3.3 GB of images should not."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> int:
        return index

    def __reduce__(self) -> tuple:
        raise AssertionError("the dataset was pickled for a worker")


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_loader_workers_share_the_dataset_instead_of_a_pickled_copy() -> None:
    assert worker_start_method(0) is None
    loader = torch.utils.data.DataLoader(
        Unpicklable(), batch_size=None, num_workers=1,
        multiprocessing_context=worker_start_method(1),
    )  # fmt: skip
    assert list(loader) == [0, 1, 2]
    spawned = torch.utils.data.DataLoader(
        Unpicklable(), batch_size=None, num_workers=1, multiprocessing_context="forkserver"
    )
    with pytest.raises(AssertionError, match="pickled"):
        list(spawned)  # Python 3.14's default start method on Linux
