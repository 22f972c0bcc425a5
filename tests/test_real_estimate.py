"""bench/real_estimate.py: hours from a run's measured throughput, only at matching settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT


def estimate(*args: str | Path) -> dict:
    script = ROOT / "bench" / "real_estimate.py"
    cmd = [sys.executable, str(script), "--params", str(ROOT / "params.yaml"), *map(str, args)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def test_hours_follow_the_measured_median_after_warmup(tmp_path: Path) -> None:
    run = tmp_path / "run"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (run / "dvclive/finetune_sd/plots/metrics/perf").mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    rates = [1.0, 2.0, 3.0, 100.0, 100.0, 100.0]  # three warm-up steps, then 100 images/s
    (run / "dvclive/finetune_sd/plots/metrics/perf/images_per_s.tsv").write_text(
        "step\timages_per_s\n" + "".join(f"{i}\t{r}\n" for i, r in enumerate(rates))
    )
    sd = params["finetune_sd"]
    steps = sd["steps"]
    images = steps * sd["batch_size"] * sd["grad_accum"]
    out = estimate("--run", run, "--device", "GPU", "--scale", "slow=4")
    assert out["finetune_sd"]["images"] == images
    assert out["finetune_sd"]["hours"] == round(images / 100 / 3600, 2)
    assert out["finetune_sd"]["hours_slow_scaled"] == round(images / 25 / 3600, 2)
    assert out["finetune_clip"]["images_per_s"] is None  # nothing logged for it
    assert out["finetune_inpaint"]["hours"].startswith("not measured")

    profile = tmp_path / "other.yaml"  # another resolution: the measured rate does not apply
    profile.write_text(yaml.safe_dump({"finetune_sd": {"resolution": 512}}))
    out = estimate("--run", run, "--device", "GPU", profile)
    assert out["finetune_sd"]["images_per_s"] is None
    assert out["finetune_sd"]["hours"].startswith("not measured")
