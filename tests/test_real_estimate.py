"""The cost model of a real run (bench/cost_model.py), and the budgets the shipped profiles
state in their headers, held through it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from accelerate import Accelerator
from diffusers import UNet2DConditionModel

from conftest import ROOT
from fashion.core.params import merged, with_shared
from fashion.inpaint.unet import INPAINT_CHANNELS
from fashion.sd.architecture import sd15_unet_config
from fashion.sd.lora import UNET_LORA_TARGETS, lora_config
from fashion.shape.maps import N_CLASSES
from fashion.shape.model import ShapeConfig, ShapeNet
from test_standin_models import load_script

cost_model = load_script(ROOT / "bench" / "cost_model.py")
estimate = load_script(ROOT / "bench" / "real_estimate.py")
standin = load_script(ROOT / "scripts" / "standin_models.py")
PROFILES = {"real": ("real",), "colab": ("real", "colab"), "seed": ("real", "seed"),
            "all-pairs": ("real", "all-pairs")}  # fmt: skip
# Shares of the real test pairs whose target changes the attribute (Eval/ind.mat with
# Anno/language_original.mat): colour, sleeve, category.
CHANGING_SHARES = {"color": 0.82, "sleeve": 0.65, "category": 0.86}


def profile_params(*names: str, **overrides: Any) -> dict[str, Any]:
    """params.yaml with the named profiles applied (as the estimate script does), then
    `overrides`."""
    files = [ROOT / "profiles" / f"{name}.yaml" for name in names]
    return merged(estimate.profile_params(ROOT / "params.yaml", files), overrides)


def costs(*names: str, model: Any = None, **overrides: Any) -> dict[str, Any]:
    params = profile_params(*names, **overrides)
    return cost_model.stage_costs(params, model or cost_model.CostModel(), ROOT)


def budget(name: str) -> dict[str, float]:
    """The `# budget:` line of a profile's header: `key <= value unit` items, comma-separated."""
    text = (ROOT / "profiles" / f"{name}.yaml").read_text()
    line = re.search(r"^# budget: (.+)$", text, re.MULTILINE)
    assert line, f"profiles/{name}.yaml states no budget"
    items = re.findall(r"([\w-]+) <= ([\d.]+)", line.group(1))
    return {key: float(value) for key, value in items}


def test_every_shipped_profile_states_a_budget_the_cost_model_holds() -> None:
    for name, chain in PROFILES.items():
        limits, found = budget(chain[-1]), costs(*chain)
        assert limits, name
        for key, limit in limits.items():
            if key in cost_model.GPUS:
                assert cost_model.hours(found, key) <= limit, (name, key)
            elif key == "drive_gb":
                assert cost_model.drive_peak_bytes(found) / 1e9 <= limit, name
            elif key == "disk_gb":
                assert sum(c.disk_bytes for c in found.values()) / 1e9 <= limit, name
            elif key == "lost_min":
                gpu = next(k for k in limits if k in cost_model.GPUS)
                worst = max(c.lost_seconds[gpu] for c in found.values())
                assert worst <= limit * 60, (name, worst)
            elif key == "ci95":
                params = profile_params(*chain)
                n_eval = cost_model.count(params["reference"]["n_images"], cost_model.REAL_TEST)
                n_pairs = cost_model.count(params["redress"]["n_images"], cost_model.REAL_TEST)
                assert cost_model.wilson_half_width(n_eval) <= limit, name
                for attribute, share in CHANGING_SHARES.items():
                    assert cost_model.wilson_half_width(n_pairs * share) <= limit, attribute
            else:
                raise AssertionError(f"profiles/{chain[-1]}.yaml: unknown budget key {key}")


def test_the_colab_profile_fits_a_free_t4_and_samples_at_the_bases_size() -> None:
    assert budget("colab") == {"T4": 12, "drive_gb": 12, "lost_min": 15}
    params = profile_params("real", "colab")
    for stage in ("generate", "redress", "sd_training"):  # sd_training: both SD fine-tuners
        assert params[stage]["resolution"] == 512, stage  # SD v1.5's native size
    found = costs("real", "colab")
    # what survives a disconnect is on Drive: the long training stages mirror, sampling keeps
    for stage in ("finetune_sd", "finetune_inpaint"):
        assert params[stage]["checkpoint_mirror"], stage
        assert found[stage].mirror_bytes > 0
    for stage in ("generate", "redress"):
        assert params[stage]["batches_dir"], stage
    assert found["prepare"].pushed_bytes == 0  # data/subset is rebuilt, not pushed


def test_the_real_profile_is_a_day_on_an_a10g_with_intervals_of_three_points() -> None:
    assert budget("real") == {"A10G": 24, "ci95": 0.03}
    assert cost_model.wilson_half_width(1068) <= 0.03 < cost_model.wilson_half_width(1060)


def test_the_all_pairs_profile_redresses_every_official_pair() -> None:
    found = costs("real", "all-pairs")
    assert found["redress"].work.startswith(f"{cost_model.REAL_TEST:,} images")
    assert cost_model.hours(found, "A10G") > cost_model.hours(costs("real"), "A10G")


def test_processes_share_the_gpu_stages_not_the_cpu_ones() -> None:
    launch = "accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16"
    one, four = costs("real"), costs("real", accelerate={"launch": launch})
    assert cost_model.processes(launch) == 4
    assert four["prepare"].seconds == one["prepare"].seconds
    for stage in ("generate", "redress", "evaluate"):
        assert four[stage].seconds["A10G"] == pytest.approx(one[stage].seconds["A10G"] / 4)


def test_each_rate_names_its_source_and_scaled_ones_say_so() -> None:
    model = cost_model.CostModel()
    spec = with_shared(profile_params("real"), "finetune_sd")
    assert model.training("finetune_sd", "H100", spec).kind == "measured"
    assert model.training("finetune_sd", "T4", spec).kind == "scaled"
    assert model.training("finetune_sd", "H100", {**spec, "resolution": 256}).kind == "scaled"
    assert model.sampling("T4", 512).kind == "published"
    for stage in costs("real").values():
        assert stage.sources
        assert all(s.split(":")[0] in ("measured", "published", "scaled") for s in stage.sources)


def test_a_rate_measured_on_a_gpu_replaces_the_scaled_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    params = profile_params("real")
    (run / "dvclive/finetune_sd/plots/metrics/perf").mkdir(parents=True)
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    rates = [1.0, 2.0, 3.0, 100.0, 100.0, 100.0]  # three warm-up steps, then 100 images/s
    (run / "dvclive/finetune_sd/plots/metrics/perf/images_per_s.tsv").write_text(
        "step\timages_per_s\n" + "".join(f"{i}\t{r}\n" for i, r in enumerate(rates))
    )
    script = ROOT / "bench" / "real_estimate.py"

    def estimate(*args: str | Path) -> dict:
        cmd = [sys.executable, str(script), "--params", str(ROOT / "params.yaml"), *map(str, args)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        return json.loads(done.stdout)["stages"]

    scaled = estimate(ROOT / "profiles/real.yaml")["finetune_sd"]
    measured = estimate(ROOT / "profiles/real.yaml", "--run", run, "--device", "T4")["finetune_sd"]
    assert any("a run on the T4" in s for s in measured["sources"])
    assert not any("a run on the T4" in s for s in scaled["sources"])
    images = 5000 * 8 * 4
    unet_hours = images / 100 / 3600
    assert measured["hours"]["T4"] < scaled["hours"]["T4"]
    assert measured["hours"]["T4"] >= unet_hours  # plus the VAE encodes and validation
    assert measured["hours"]["A10G"] == scaled["hours"]["A10G"]  # measured on the T4 only

    other = tmp_path / "other.yaml"  # another resolution: the measured rate does not apply
    other.write_text(yaml.safe_dump({"finetune_sd": {"resolution": 256}}))
    mismatched = estimate(ROOT / "profiles/real.yaml", other, "--run", run, "--device", "T4")
    assert not any("a run on the T4" in s for s in mismatched["finetune_sd"]["sources"])


def test_parameter_counts_are_the_architectures() -> None:
    assert cost_model.PARAMETERS == standin.PUBLISHED_PARAMETERS
    with torch.device("meta"):  # shapes only: no 3.4 GB of weights
        unet = UNet2DConditionModel(**sd15_unet_config())
    before = sum(p.numel() for p in unet.parameters())
    unet.add_adapter(lora_config(4, UNET_LORA_TARGETS))
    added = sum(p.numel() for p in unet.parameters()) - before
    assert added == 4 * cost_model.LORA_PARAMETERS_PER_RANK


def test_lora_conv_in_is_timed_as_lora_and_saves_conv_in_beside_the_adapters() -> None:
    model = cost_model.CostModel()
    spec = with_shared(profile_params("real"), "finetune_inpaint")
    assert spec["mode"] == "lora_conv_in"
    for gpu in cost_model.GPUS:
        rate = model.training("finetune_inpaint", gpu, spec)
        lora = model.training("finetune_inpaint", gpu, {**spec, "mode": "lora"})
        assert rate.per_s == lora.per_s and rate.kind == lora.kind
        assert "lora_conv_in" in rate.source and "conv_in" not in lora.source
    # redress v2's UNet reads inpainting's 9 channels and the map's 7 classes
    channels = cost_model.INPAINT_CHANNELS + cost_model.MAP_CLASSES
    assert (cost_model.INPAINT_CHANNELS, cost_model.MAP_CLASSES) == (INPAINT_CHANNELS, N_CLASSES)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**{**sd15_unet_config(), "in_channels": channels})
    conv_in = sum(p.numel() for p in unet.conv_in.parameters())
    assert cost_model.conv_in_parameters(channels) == conv_in == 46_400
    saved, checkpoint = cost_model.sd_bytes(spec, channels)
    lora_saved, lora_checkpoint = cost_model.sd_bytes({**spec, "mode": "lora"}, channels)
    assert saved - lora_saved == conv_in * 4
    assert checkpoint - lora_checkpoint == 3 * conv_in * 4  # with AdamW's two moments
    found = costs("real")
    kept = int(spec["keep_checkpoints"])
    assert found["finetune_inpaint"].disk_bytes == saved + kept * checkpoint


def test_the_shape_stage_trains_its_maps_at_the_cpu_rate_on_every_gpu() -> None:
    params = profile_params("real")
    spec, found = params["reshape"], costs("real")
    names = list(found)
    assert names.index("finetune_sd") < names.index("reshape") < names.index("finetune_inpaint")
    maps = int(spec["steps"]) * int(spec["batch_size"])
    assert found["reshape"].work.startswith(f"{maps:,} maps")
    for gpu in cost_model.GPUS:  # an upper bound: the 2-core rate
        assert found["reshape"].seconds[gpu] == pytest.approx(maps / (9.2 * 64))
    assert all(s.startswith("measured: ") for s in found["reshape"].sources)
    assert "upper bound" in next(iter(found["reshape"].sources))
    faster = cost_model.CostModel({"reshape": {"T4": cost_model.Rate(5000.0, "measured", "x")}})
    on_t4 = costs("real", model=faster)["reshape"].seconds
    assert (
        on_t4["T4"] == pytest.approx(maps / 5000) and on_t4["L4"] == found["reshape"].seconds["L4"]
    )
    # the model's size: ShapeNet's parameters at the section's widths and a vocabulary
    for width, words in ((int(spec["width"]), 64), (32, 1000)):
        cfg = ShapeConfig(
            vocab=tuple(f"w{i}" for i in range(words)),
            width=width,
            text_dim=int(spec["text_dim"]),
            work_size=int(spec["work_size"]),
        )
        counted = sum(p.numel() for p in ShapeNet(cfg).parameters())
        assert cost_model.shape_parameters({**spec, "width": width}, words) == counted
    size = cost_model.shape_parameters(spec) * 4
    checkpoint = 3 * size + cost_model.CHECKPOINT_EXTRA_BYTES
    grid = int(spec["grid_rows"]) * 4 * 128 * 128 * 3
    assert found["reshape"].disk_bytes == size + int(spec["keep_checkpoints"]) * checkpoint + grid


def test_a_checkpoint_is_the_weights_and_adams_two_moments(tmp_path: Path) -> None:
    """The byte rule the model uses for full checkpoints, against accelerate's save_state."""
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    net = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.Linear(1024, 512))
    optimizer = torch.optim.AdamW(net.parameters())
    net, optimizer = accelerator.prepare(net, optimizer)
    net(torch.randn(4, 512)).sum().backward()
    optimizer.step()
    accelerator.save_state(str(tmp_path / "checkpoint"))
    written = sum(f.stat().st_size for f in (tmp_path / "checkpoint").rglob("*") if f.is_file())
    weights = sum(p.numel() for p in net.parameters()) * 4.0
    assert 3 * weights <= written <= 3 * weights * 1.02 + 64_000  # + RNG states, metadata


def test_the_cost_tables_in_the_docs_are_the_models() -> None:
    """docs/cost.md shows each shipped profile's table as the cost model prints it now."""
    doc = (ROOT / "docs" / "cost.md").read_text()
    for chain in PROFILES.values():
        params = profile_params(*chain)
        table = estimate.markdown(cost_model.stage_costs(params, cost_model.CostModel(), ROOT))
        assert table in doc, f"docs/cost.md: the table of {' + '.join(chain)} is out of date"
    assert estimate.rates_markdown(cost_model.CostModel()) in doc
