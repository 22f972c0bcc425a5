"""base_clip -> finetune_clip -> eval_clip in a temporary project (tiny CLIP).

Covers resume (a re-run from the step-3 checkpoint ends on the weights of the uninterrupted
run, also with other num_workers and cadences; more steps with a fixed schedule end on the
weights of a fresh run), restarts (another lr; more steps with schedule_steps null; two CPU
processes under `accelerate launch` must not resume the one-process checkpoints), the
metrics file's shape and bad inputs. The stages' `main()` run in this
process (each stage process pays seconds of imports); only the two-process launch, which
needs real processes, runs as a subprocess. One trained project is shared by the module.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

import base_clip
import eval_clip
import finetune_clip
from clip_subsets import write_subsets
from fashion.clip.data import read_pairs
from fashion.clip.models import embed_images, embed_texts, load_clip
from fashion.core.stage import PipelineError
from fashion.metrics.intervals import wilson
from fashion.metrics.zero_shot import ZeroShotClassifier
from fashion.train.checkpoints import BestModel

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "accelerate": {"launch": "accelerate launch --num_processes 1"},
    "training": {"seed": 0},
    "base_clip": {
        "pretrained": "tiny", "revision": None,
        "tiny": {"vocab_size": 400, "max_length": 32, "image_size": 32, "patch_size": 8,
                 "vision_width": 32, "vision_layers": 1, "vision_heads": 2,
                 "text_width": 32, "text_layers": 1, "text_heads": 2, "projection_dim": 16},
    },
    "finetune_clip": {
        "steps": 6, "batch_size": 16, "grad_accum": 1, "lr": 1e-3,
        "weight_decay": 0.1, "betas": [0.9, 0.98], "eps": 1e-6, "warmup_steps": 2,
        "max_grad_norm": 1.0, "lock_image": False, "lock_text": False,
        "log_every": 1, "eval_every": 3, "checkpoint_every": 3, "keep_checkpoints": 2,
        "num_workers": 0,
    },
    "split": {"validation_images": 16, "seed": 0, "evaluate": "test"},
    "eval_clip": {"n_images": "all", "seed": 0, "batch_size": 16, "chunk": 8, "histogram_bins": 10},
}  # fmt: skip


def run(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=project, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})},
    )  # fmt: skip


def stage(project: Path, module) -> None:
    """Run a stage's `main()` in this process, in `project`, with accelerate's process-wide
    state fresh (not an earlier test's mixed precision)."""
    from accelerate.state import AcceleratorState

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        AcceleratorState._reset_state(True)
        module.main()


def make_project(path: Path, **overrides: dict) -> Path:
    shutil.copytree(ROOT / "stages", path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    params = {k: {**v, **overrides.get(k, {})} for k, v in PARAMS.items()}
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    write_subsets(path / "data/subset")
    return path


def set_params(project: Path, **finetune: object) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune_clip"].update(finetune)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def copy_trained(trained: Path, dest: Path, *ignore: str) -> Path:
    """A copy of the trained project without `ignore` (folder names), its outputs removed."""
    shutil.copytree(trained, dest, ignore=shutil.ignore_patterns("clip", "dvclive", *ignore))
    return dest


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def assert_same_weights(
    resumed: dict[str, torch.Tensor], straight: dict[str, torch.Tensor]
) -> None:
    """A resumed run ends on the uninterrupted run's weights."""
    assert max_abs_diff(resumed, straight) <= 1e-6


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("clip"))
    stage(project, base_clip)
    stage(project, finetune_clip)
    stage(project, eval_clip)
    return project


def test_base_clip_writes_a_loadable_source(trained):
    source = json.loads((trained / "models/base_clip/source.json").read_text())
    assert source == {"pretrained": "models/base_clip", "revision": None}
    config = json.loads((trained / "models/base_clip/config.json").read_text())
    assert config["text_config"]["eos_token_id"] != 2


def test_finetune_logs_curves_and_keeps_checkpoints(trained):
    live = trained / "dvclive/finetune_clip"
    metrics = json.loads((live / "metrics.json").read_text())
    assert math.isfinite(metrics["train"]["loss"]) and 0 <= metrics["val"]["caption_r1"] <= 1
    assert (live / "plots/metrics/train/lr.tsv").is_file()
    rates = pd.read_csv(live / "plots/metrics/perf/images_per_s.tsv", sep="\t")
    assert rates.step.tolist() == list(range(1, 7)) and (rates.images_per_s > 0).all()
    found = sorted(p.name for p in (trained / "checkpoints/finetune_clip").glob("step_*"))
    assert found == ["step_0000003", "step_0000006"]  # every checkpoint_every and the last
    base, tuned = weights(trained / "models/base_clip"), weights(trained / "models/clip")
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    assert tuned["logit_scale"].item() <= math.log(100) + 1e-6


@pytest.mark.parametrize(
    "changed",
    [{}, {"num_workers": 1, "eval_every": 2, "log_every": 2, "checkpoint_every": 2}],
    ids=["same", "workers-and-cadence"],
)
def test_resume_from_checkpoint_matches_uninterrupted_run(trained, tmp_path, capsys, changed):
    """An interrupted run (its last checkpoint at step 3) resumes, whatever the settings that
    are not in the fingerprint, and ends on the uninterrupted run's weights."""
    uninterrupted = weights(trained / "models/clip")
    project = copy_trained(trained, tmp_path / "resumed", "step_0000006")
    set_params(project, **changed)
    capsys.readouterr()
    stage(project, finetune_clip)
    assert "resumed from the step 3 checkpoint" in capsys.readouterr().out
    assert_same_weights(weights(project / "models/clip"), uninterrupted)


def test_more_steps_with_a_fixed_schedule_match_a_fresh_run(trained, tmp_path, capsys):
    """The steps rule: schedule_steps 8, trained to 4 steps then to 8 = 8 steps straight."""
    straight = copy_trained(trained, tmp_path / "straight", "checkpoints")
    set_params(straight, steps=8, schedule_steps=8, checkpoint_every=4)
    stage(straight, finetune_clip)
    resumed = copy_trained(trained, tmp_path / "resumed", "checkpoints")
    set_params(resumed, steps=4, schedule_steps=8, checkpoint_every=4)
    stage(resumed, finetune_clip)
    set_params(resumed, steps=8)
    capsys.readouterr()
    stage(resumed, finetune_clip)
    assert "resumed from the step 4 checkpoint" in capsys.readouterr().out
    diff = max_abs_diff(weights(resumed / "models/clip"), weights(straight / "models/clip"))
    print(f"finetune_clip resumed vs fresh: max abs weight difference {diff:.3g}")
    assert diff <= 1e-6
    steps = pd.read_csv(resumed / "dvclive/finetune_clip/plots/metrics/train/loss.tsv", sep="\t")
    assert steps.step.tolist() == list(range(1, 9))  # the curve goes on


def test_keep_best_val_r1_saves_the_best_evaluation(trained, tmp_path, monkeypatch):
    """A known validation curve (0.2, 0.9, 0.5 at steps 2, 4, 6): the saved model is the
    step-4 one, i.e. what the same 6-step schedule stopped at step 4 saves with
    saved_weights: last."""
    best = copy_trained(trained, tmp_path / "best", "checkpoints")
    set_params(best, saved_weights="best_val_r1", eval_every=2, schedule_steps=6)
    curve = iter([0.2, 0.9, 0.5])
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: next(curve))
    stage(best, finetune_clip)
    live = json.loads((best / "dvclive/finetune_clip/metrics.json").read_text())
    assert live["val"]["best_step"] == 4 and live["val"]["best_caption_r1"] == 0.9
    assert not (best / "models/clip/best.json").exists()
    assert (best / "models/clip/tokenizer_config.json").is_file()  # still a whole model

    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: 0.1)
    stopped = copy_trained(trained, tmp_path / "stopped", "checkpoints")
    set_params(stopped, steps=4, schedule_steps=6)
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: 0.0)
    stage(stopped, finetune_clip)
    assert_same_weights(weights(best / "models/clip"), weights(stopped / "models/clip"))
    final = copy_trained(trained, tmp_path / "final", "checkpoints")
    set_params(final, schedule_steps=6)
    stage(final, finetune_clip)
    assert max_abs_diff(weights(best / "models/clip"), weights(final / "models/clip")) > 1e-4


def test_n_images_and_epochs_give_the_step_count(trained, tmp_path, capsys):
    """20 images at batch 8 are 3 steps an epoch (the last of 4 images); `steps` caps; a batch
    larger than the images is cut to them."""
    for name, changed, expected in [
        ("epochs", {"n_images": 20, "batch_size": 8, "epochs": 2, "steps": None}, 6),
        ("capped", {"n_images": 20, "batch_size": 8, "epochs": 2, "steps": 4}, 4),
        ("tiny", {"n_images": 5, "batch_size": 16, "epochs": 3, "steps": None}, 3),
    ]:
        project = copy_trained(trained, tmp_path / name, "checkpoints")
        set_params(project, **changed)
        capsys.readouterr()
        if name == "tiny":
            with pytest.warns(UserWarning, match=r"batch_size=16 .* exceeds the 5 training"):
                stage(project, finetune_clip)
        else:
            stage(project, finetune_clip)
        out = capsys.readouterr().out
        assert f"{changed['n_images']} train and 16 validation images, steps 1..{expected}" in out
        live = project / "dvclive/finetune_clip"
        losses = pd.read_csv(live / "plots/metrics/train/loss.tsv", sep="\t")
        assert losses.step.tolist() == list(range(1, expected + 1)), name


def test_keep_best_without_a_validation_split_is_an_error(trained, tmp_path, monkeypatch):
    project = copy_trained(trained, tmp_path / "p", "checkpoints")
    set_params(project, saved_weights="best_val_r1")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["split"]["validation_images"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    with pytest.raises(PipelineError, match="best_val_r1 needs a validation split"):
        finetune_clip.main()
    assert not (project / "models/clip").exists()


@pytest.mark.parametrize(
    ("changed", "why"),
    [({"steps": 8}, "params.schedule_steps"), ({"lr": 5e-4}, "params.lr")],
    ids=["more-steps-schedule-null", "lr"],
)
def test_a_changed_result_param_restarts(trained, tmp_path, capsys, changed, why):
    project = copy_trained(trained, tmp_path / "changed")
    set_params(project, **changed)
    capsys.readouterr()
    stage(project, finetune_clip)
    out = capsys.readouterr().out
    assert f"trained with another {why}: starting afresh" in out and "resumed" not in out


def test_an_old_param_name_is_a_clear_error(trained, tmp_path, monkeypatch):
    project = copy_trained(trained, tmp_path / "old")
    set_params(project, validation_every=5)
    monkeypatch.chdir(project)
    with pytest.raises(
        PipelineError,
        match="^params.yaml: finetune_clip.validation_every: renamed: it is now "
        "finetune_clip.eval_every$",
    ):
        finetune_clip.main()


def test_two_cpu_processes(trained, tmp_path):
    project = tmp_path / "ddp"
    shutil.copytree(trained, project)  # its checkpoints come from one process: not resumed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
              "2", "--main_process_port", port, "stages/finetune_clip.py"]  # fmt: skip
    done = run(project, *launch, env={"ACCELERATE_USE_CPU": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finetune_clip: 2 process(es)" in done.stdout
    assert "another num_processes: starting afresh" in done.stdout
    assert "resumed" not in done.stdout
    config = json.loads((project / "checkpoints/finetune_clip/fingerprint.json").read_text())
    assert config["num_processes"] == 2
    metrics = json.loads((project / "dvclive/finetune_clip/metrics.json").read_text())
    assert math.isfinite(metrics["train"]["loss"])
    tuned = weights(project / "models/clip")
    assert all(torch.isfinite(v).all() for v in tuned.values())


def test_eval_clip_metrics_shape(trained):
    metrics = json.loads((trained / "metrics/clip.json").read_text())
    assert set(metrics) == {
        "split", "n", "n_distinct_captions", "base", "finetuned", "environment"
    }  # fmt: skip
    assert metrics["environment"]["versions"]["torch"] == torch.__version__
    assert metrics["split"] == "test" and metrics["n"] == 32
    intervals = {f"r{k}_ci95_{end}" for k in (1, 5, 10) for end in ("low", "high")}
    recall = {"r1", "r5", "r10", "mean_rank", "median_rank", *intervals}
    for model in ("base", "finetuned"):
        m = metrics[model]
        assert set(m) == {
            "i2t", "t2i", "i2t_distinct", "similarity", "unseen_caption", "product_disjoint",
            "attr_acc", "attr_balanced_acc",
        }  # fmt: skip
        for key in ("i2t", "t2i", "i2t_distinct"):
            assert set(m[key]) == recall
            for k in (1, 5, 10):  # the Wilson interval of the hits of the queries
                hits = round(m[key][f"r{k}"] * metrics["n"])
                low, high = wilson(hits, metrics["n"])
                assert (m[key][f"r{k}_ci95_low"], m[key][f"r{k}_ci95_high"]) == (low, high)
        # the test file's 4 unseen outfits and 16 products of its own (tests/clip_subsets.py)
        assert m["unseen_caption"]["n"] == 4 and m["product_disjoint"]["n"] == 16
        attributes = {"color", "sleeve", "category", "gender"}
        assert set(m["attr_balanced_acc"]) == attributes
        assert set(m["attr_acc"]) == {
            f"{a}{suffix}" for a in attributes for suffix in ("", "_n", "_ci95_low", "_ci95_high")
        }
        assert m["attr_acc"]["color_n"] == metrics["n"]  # every pair has a colour
    header = (trained / "plots/clip/similarity.csv").read_text().splitlines()[0]
    assert header == "similarity,base_matched,base_unmatched,finetuned_matched,finetuned_unmatched"


def test_eval_clip_agrees_with_a_direct_computation(trained):
    """R@1, the subsets' R@1, mean similarities and attribute accuracy recomputed by brute
    force from the fine-tuned model's embeddings."""
    metrics = json.loads((trained / "metrics/clip.json").read_text())["finetuned"]
    model, processor = load_clip(trained / "models/clip")
    pairs = read_pairs(trained / "data/subset/test.h5")
    images = embed_images(model, processor, pairs.images).double()
    texts = embed_texts(model, processor, pairs.captions).double()
    sim = images @ texts.T
    captions = np.array(pairs.captions)
    hit = captions[sim.argmax(1).numpy()] == captions  # argmax: the lowest index on ties
    assert metrics["i2t"]["r1"] == pytest.approx(hit.mean())
    t2i_hit = captions[sim.argmax(0).numpy()] == captions
    assert metrics["t2i"]["r1"] == pytest.approx(t2i_hit.mean())
    unseen = np.arange(28, 32)  # UNSEEN_COMBO rows
    assert metrics["unseen_caption"]["i2t"]["r1"] == pytest.approx(hit[unseen].mean())
    assert metrics["product_disjoint"]["i2t"]["r1"] == pytest.approx(hit[1::2].mean())
    distinct = sorted(set(pairs.captions))
    first = [pairs.captions.index(c) for c in distinct]
    distinct_sim = (images @ texts[first].T).numpy()
    best = np.array(distinct)[distinct_sim.argmax(1)]
    assert metrics["i2t_distinct"]["r1"] == pytest.approx((best == captions).mean())
    # each sentence once in the gallery: rank = 1 + distinct captions scored above its own
    own = distinct_sim[np.arange(len(captions)), [distinct.index(c) for c in captions]]
    ranks = 1 + (distinct_sim > own[:, None]).sum(1)
    assert metrics["i2t_distinct"]["mean_rank"] == pytest.approx(ranks.mean())
    assert metrics["i2t_distinct"]["r5"] == pytest.approx((ranks <= 5).mean())
    same = captions[:, None] == captions[None, :]
    assert metrics["similarity"]["matched_mean"] == pytest.approx(sim.diagonal().mean().item())
    assert metrics["similarity"]["unmatched_mean"] == pytest.approx(sim[~same].mean().item())
    classifier = ZeroShotClassifier(model, processor)
    for attribute in ("color", "category"):
        truth = pairs.codes[attribute]
        predicted = classifier.predict(images.float(), attribute)
        assert metrics["attr_acc"][attribute] == pytest.approx((predicted == truth).mean())


def test_unknown_base_model_is_an_error(tmp_path, monkeypatch):
    project = make_project(tmp_path, base_clip={"pretrained": str(tmp_path / "no-such-model")})
    monkeypatch.chdir(project)
    with pytest.raises(PipelineError, match="params.yaml: base_clip.pretrained"):
        base_clip.main()
    assert not (project / "models/base_clip").exists()


def test_bad_eval_sample_size_and_broken_subset_are_errors(trained, tmp_path, monkeypatch):
    project = tmp_path / "bad"
    shutil.copytree(trained, project)
    (project / "metrics/clip.json").unlink(missing_ok=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["eval_clip"]["n_images"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(project)
    message = "eval_clip.n_images: must be an integer ≥ 1 or 'all', got 0"
    with pytest.raises(PipelineError, match=message):
        eval_clip.main()
    assert not (project / "metrics/clip.json").exists()
    params["eval_clip"]["n_images"] = "all"  # every stage checks the whole file: put it right
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    with h5py.File(project / "data/subset/train.h5", "a") as f:
        del f["caption"]
    shutil.rmtree(project / "models/clip")
    with pytest.raises(PipelineError, match=r"train.h5: missing datasets \['caption'\]"):
        finetune_clip.main()
    assert not (project / "models/clip").exists()


def test_a_fresh_machine_resumes_from_the_checkpoint_mirror(trained, tmp_path, capsys):
    """Checkpoints mirrored to lasting storage (Drive in Colab) restore a lost local disk."""
    uninterrupted = weights(trained / "models/clip")
    mirrored = tmp_path / "mirrored"
    shutil.copytree(trained, mirrored, ignore=shutil.ignore_patterns("checkpoints", "dvclive"))
    params = yaml.safe_load((mirrored / "params.yaml").read_text())
    params["finetune_clip"]["checkpoint_mirror"] = str(tmp_path / "drive/finetune_clip")
    (mirrored / "params.yaml").write_text(yaml.safe_dump(params))
    stage(mirrored, finetune_clip)
    assert sorted(p.name for p in (tmp_path / "drive/finetune_clip").iterdir()) == [
        "fingerprint.json",
        "step_0000006",
    ]
    fresh = tmp_path / "fresh"  # the local disk is gone: no checkpoints, no model
    shutil.copytree(
        mirrored, fresh, ignore=shutil.ignore_patterns("checkpoints", "clip", "dvclive")
    )
    capsys.readouterr()
    stage(fresh, finetune_clip)
    assert "resumed from the step 6 checkpoint" in capsys.readouterr().out
    resumed = weights(fresh / "models/clip")
    assert_same_weights(resumed, uninterrupted)


def test_a_resume_at_the_last_step_from_the_mirror_keeps_the_best(trained, tmp_path, monkeypatch):
    """keep: best_val_r1 with checkpoints mirrored: a fresh machine whose run stopped after
    the last step's checkpoint ends cleanly, on the best step's weights (best/ is mirrored
    with the checkpoint), validating nothing again."""
    drive = tmp_path / "drive/finetune_clip"
    first = copy_trained(trained, tmp_path / "first", "checkpoints")
    set_params(first, saved_weights="best_val_r1", eval_every=2, checkpoint_mirror=str(drive))
    curve = iter([0.2, 0.9, 0.5])
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: next(curve))
    stage(first, finetune_clip)
    fresh = tmp_path / "fresh"  # the local disk is gone: no checkpoints, no model, no curves
    shutil.copytree(first, fresh, ignore=shutil.ignore_patterns("checkpoints", "clip", "dvclive"))
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: pytest.fail("validated"))
    stage(fresh, finetune_clip)
    assert BestModel(fresh / "checkpoints/finetune_clip").record() == {"step": 4, "score": 0.9}
    assert_same_weights(weights(fresh / "models/clip"), weights(first / "models/clip"))
    live = json.loads((fresh / "dvclive/finetune_clip/metrics.json").read_text())
    assert live["val"]["best_step"] == 4 and live["val"]["best_caption_r1"] == 0.9


def test_a_resume_at_the_last_step_without_best_ends_on_its_weights(
    trained, tmp_path, monkeypatch, capsys
):
    """A last-step checkpoint without best/ beside it (a mirror written before it held one):
    the stage still ends, on the resumed weights, validated as the only candidate."""
    project = copy_trained(trained, tmp_path / "p", "checkpoints")
    set_params(project, saved_weights="best_val_r1", eval_every=2)
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: 0.5)
    stage(project, finetune_clip)
    checkpoints = project / "checkpoints/finetune_clip"
    shutil.rmtree(checkpoints / "best")
    shutil.rmtree(project / "models/clip")
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: 0.25)
    capsys.readouterr()
    stage(project, finetune_clip)
    out = capsys.readouterr().out
    assert "resumed from the step 6 checkpoint" in out
    assert "no best weights of the steps up to 6" in out
    last = load_file(checkpoints / "step_0000006/model.safetensors")
    assert_same_weights(weights(project / "models/clip"), last)
    assert BestModel(checkpoints).record() == {"step": 6, "score": 0.25}


def test_a_resumed_run_keeps_only_the_best_of_its_own_steps(trained, tmp_path, monkeypatch, capsys):
    """best/ recorded at step 6, the run resumed from step 3 with steps 4 (the schedule
    fixed): the saved model is of a step this run reached, not step 6's. (The best of steps
    1-3 went with step 6's record: the resumed weights stand in for it.)"""
    project = copy_trained(trained, tmp_path / "p", "checkpoints")
    set_params(project, saved_weights="best_val_r1", eval_every=2, schedule_steps=6)
    curve = iter([0.2, 0.5, 0.9])
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: next(curve))
    stage(project, finetune_clip)
    checkpoints = project / "checkpoints/finetune_clip"
    assert BestModel(checkpoints).record() == {"step": 6, "score": 0.9}
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: 0.1)
    stopped = copy_trained(trained, tmp_path / "stopped", "checkpoints")
    set_params(stopped, steps=4, schedule_steps=6)
    stage(stopped, finetune_clip)  # saved_weights: last, so its model is step 4's weights

    set_params(project, steps=4)
    curve = iter([0.1, 0.3])  # the resumed weights (step 3), then step 4
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: next(curve))
    capsys.readouterr()
    stage(project, finetune_clip)
    assert "no best weights of the steps up to 3" in capsys.readouterr().out
    assert BestModel(checkpoints).record() == {"step": 4, "score": 0.3}
    assert_same_weights(weights(project / "models/clip"), weights(stopped / "models/clip"))
    set_params(project, steps=2)  # no checkpoint up to step 2: trained from the start
    monkeypatch.setattr(finetune_clip, "caption_r1", lambda *args: 0.2)
    stage(project, finetune_clip)
    assert BestModel(checkpoints).record() == {"step": 2, "score": 0.2}
