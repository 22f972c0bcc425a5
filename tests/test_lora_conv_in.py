"""Mode lora_conv_in: LoRA on attention plus a trainable conv_in, for an inpainting UNet
widened to condition channels (redress v2's maps). On a tiny 9-channel inpainting base grown
to 16 channels: what trains, the saved model equals the trained one, a resumed run ends on
the uninterrupted run's weights, mode lora refuses to grow, and a bf16 step works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from fashion.core.stage import PipelineError
from fashion.inpaint.masks import random_masks
from fashion.inpaint.models import as_inpainting, load_finetuned_inpainting, training_start
from fashion.inpaint.training import InpaintData, InpaintFineTuner
from fashion.inpaint.unet import INPAINT_CHANNELS, MapConditionedUNet, inpainting_unet
from fashion.sd.config import TrainConfig
from fashion.sd.models import CONV_IN_WEIGHTS, LORA_WEIGHTS, build_tiny_sd
from fashion.train.checkpoints import Checkpoints
from sd_testdata import TINY_SD_PARAMS

CAPTIONS = ["the lady wore a red dress.", "the man wore a blue tee.", "a green coat"]
CHANNELS = 16  # 9 inpainting channels and 7 maps
RESOLUTION = 16  # the tiny VAE halves it: 8 x 8 latents


class MapFineTuner(InpaintFineTuner):
    """The inpainting fine-tuner fed 7 map channels more, drawn from the batch's seeded
    generator (a stand-in for the segmentation maps at latent size)."""

    def conditioning(
        self, rows: np.ndarray, flip: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor:
        inpaint = super().conditioning(rows, flip, rng)
        shape = (len(rows), CHANNELS - INPAINT_CHANNELS, *inpaint.shape[-2:])
        maps = torch.from_numpy(rng.random(shape, dtype=np.float32))
        return torch.cat([inpaint, maps.to(inpaint.device)], dim=1)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Tiny inpainting pipelines saved as bases: {UNet input channels: folder} for 4 (a
    text-to-image UNet) and 9."""
    root = tmp_path_factory.mktemp("lora_conv_in")
    tiny = build_tiny_sd(CAPTIONS * 4, TINY_SD_PARAMS["base_sd"]["tiny"], seed=0)
    folders = {4: root / "base4", 9: root / "base9"}
    as_inpainting(tiny).save_pretrained(folders[4])
    tiny.unet = inpainting_unet(tiny.unet)
    as_inpainting(tiny).save_pretrained(folders[9])
    return folders


@pytest.fixture(scope="module")
def data() -> InpaintData:
    rng = np.random.default_rng(0)
    n = 8
    return InpaintData(
        rng.integers(0, 256, (n, RESOLUTION, RESOLUTION, 3), dtype=np.uint8),
        [CAPTIONS[i % len(CAPTIONS)] for i in range(n)],
        random_masks(rng, n, RESOLUTION),
    )


def make_tuner(base: Path, data: InpaintData, mixed_precision: str = "no") -> MapFineTuner:
    """A fresh lora_conv_in fine-tuner on `base` grown to 16 channels, seeded alike."""
    AcceleratorState._reset_state(True)
    accelerator = Accelerator(mixed_precision=mixed_precision)
    set_seed(0)  # the same LoRA initialisation every time
    pipe = training_start(base, None, "lora_conv_in", in_channels=CHANNELS)
    cfg = TrainConfig(
        mode="lora_conv_in",
        resolution=RESOLUTION,
        batch_size=4,
        steps=4,
        schedule_steps=4,
        lr=1e-2,
        lr_scheduler="cosine",
        train_text_encoder=False,  # text-encoder LoRA needs a newer peft
        caption_dropout=0.0,
        validation_prompts=[],
    )
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return MapFineTuner(
        pipe, scheduler, cfg, data, accelerator, random_mask_p=0.5, base=(str(base), None)
    )


def unet_of(tuner: MapFineTuner) -> torch.nn.Module:
    return tuner.accelerator.unwrap_model(tuner.unet)


def trained(tuner: MapFineTuner) -> dict[str, torch.Tensor]:
    """The trained parameters by name, copied."""
    return {n: p.detach().clone() for n, p in unet_of(tuner).named_parameters() if p.requires_grad}


def unet_inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 16-channel input, timesteps and caption states (random, seeded)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, CHANNELS, RESOLUTION // 2, RESOLUTION // 2, generator=g)
    width = TINY_SD_PARAMS["base_sd"]["tiny"]["text_width"]
    hidden = torch.randn(batch, 16, width, generator=g)
    return x, torch.tensor([10, 700][:batch]), hidden


def test_only_lora_and_conv_in_train_and_the_new_channels_learn(
    bases: dict[int, Path], data: InpaintData
) -> None:
    tuner = make_tuner(bases[9], data)
    unet = unet_of(tuner)
    before = {
        n.replace(".base_layer", ""): v.detach().clone()
        for n, v in unet.state_dict().items()
        if "lora_" not in n
    }
    assert not before["conv_in.weight"][:, INPAINT_CHANNELS:].any()  # grown with zeros
    names = set(trained(tuner))
    assert {"conv_in.weight", "conv_in.bias"} <= names
    assert all(n.startswith("conv_in.") or ".lora_" in n for n in names)
    assert any(".lora_" in n for n in names)
    trained_ids = {id(p) for p in unet.parameters() if p.requires_grad}
    assert {id(p) for p in tuner.optimizer.param_groups[0]["params"]} == trained_ids
    start = trained(tuner)

    for step in range(3):
        assert np.isfinite(tuner.train_step(step))

    after = trained(tuner)
    weight = after["conv_in.weight"]
    assert weight[:, INPAINT_CHANNELS:].abs().amin(dim=(0, 2, 3)).gt(0).all()  # every map
    assert not torch.equal(weight[:, :INPAINT_CHANNELS], before["conv_in.weight"][:, :9])
    assert not torch.equal(after["conv_in.bias"], before["conv_in.bias"])
    lora_b = [n for n in after if "lora_B" in n]
    assert lora_b and all(not torch.equal(after[n], start[n]) for n in lora_b)
    assert all(p.dtype == torch.float32 for p in after.values())
    frozen = {
        n.replace(".base_layer", ""): v
        for n, v in unet.state_dict().items()
        if "lora_" not in n and not n.startswith("conv_in.")
    }
    assert frozen.keys() == before.keys() - {"conv_in.weight", "conv_in.bias"}
    assert all(torch.equal(v, before[n]) for n, v in frozen.items())


def test_the_saved_model_predicts_what_the_trained_one_does(
    bases: dict[int, Path], data: InpaintData, tmp_path: Path
) -> None:
    tuner = make_tuner(bases[9], data)
    for step in range(2):
        tuner.train_step(step)
    out = tmp_path / "inpaint"
    tuner.save(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CONV_IN_WEIGHTS, LORA_WEIGHTS, "scheduler", "source.json"]
    )
    conv_in = load_file(out / CONV_IN_WEIGHTS)
    assert sorted(conv_in) == ["bias", "weight"]
    assert conv_in["weight"].shape[1] == CHANNELS and conv_in["weight"].dtype == torch.float32
    assert not any(k.startswith("unet.conv_in") for k in load_file(out / LORA_WEIGHTS))

    pipe = load_finetuned_inpainting(out)
    assert pipe.unet.config.in_channels == CHANNELS
    torch.testing.assert_close(pipe.unet.conv_in.weight, unet_of(tuner).conv_in.weight)
    x, t, hidden = unet_inputs()
    with torch.no_grad():
        expected = unet_of(tuner).eval()(x, t, hidden).sample
        loaded = pipe.unet.eval()(x, t, hidden).sample
        wrapped = MapConditionedUNet(pipe.unet)
        wrapped.maps = x[:, INPAINT_CHANNELS:]
        through_maps = wrapped(x[:, :INPAINT_CHANNELS], t, hidden).sample
        untrained = training_start(bases[9], None, "lora_conv_in", CHANNELS).unet.eval()
        before = untrained(x, t, hidden).sample
    assert not torch.allclose(before, expected, atol=1e-3)  # training moved the output
    torch.testing.assert_close(loaded, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(through_maps, loaded)


def test_a_resumed_run_ends_on_the_uninterrupted_runs_weights(
    bases: dict[int, Path], data: InpaintData, tmp_path: Path
) -> None:
    """4 steps straight vs 2, a checkpoint, a new fine-tuner resumed from it and 2 more."""
    straight = make_tuner(bases[9], data)
    for step in range(4):
        straight.train_step(step)
    want = trained(straight)

    root = tmp_path / "checkpoints"
    first = make_tuner(bases[9], data)
    saved = Checkpoints(root, first.fingerprint(), keep=2)
    assert saved.resume(first.accelerator, 4) == 0
    for step in range(2):
        first.train_step(step)
    saved.save(first.accelerator, 2)
    files = {p.name for p in (root / "step_0000002").iterdir()}
    assert {CONV_IN_WEIGHTS, LORA_WEIGHTS} <= files
    assert not any(f.startswith("model") for f in files)  # the frozen base is not saved
    halfway = trained(first)

    second = make_tuner(bases[9], data)
    assert not torch.equal(trained(second)["conv_in.weight"], halfway["conv_in.weight"])
    resumed = Checkpoints(root, second.fingerprint(), keep=2)
    assert resumed.resume(second.accelerator, 4) == 2
    loaded = trained(second)
    assert all(torch.equal(loaded[n], halfway[n]) for n in halfway)
    for step in range(2, 4):
        second.train_step(step)
    got = trained(second)
    assert got.keys() == want.keys()
    diff = max(float((got[n] - want[n]).abs().max()) for n in want)
    assert diff <= 1e-6, diff
    assert not torch.equal(got["conv_in.weight"], halfway["conv_in.weight"])


def test_growing_the_unet_needs_a_mode_that_trains_conv_in(bases: dict[int, Path]) -> None:
    with pytest.raises(PipelineError) as refused:
        training_start(bases[9], None, "lora", in_channels=CHANNELS)
    message = str(refused.value)
    assert "\n" not in message
    assert "finetune_inpaint.mode 'lora'" in message
    assert "lora_conv_in" in message and "full" in message
    assert training_start(bases[9], None, "lora").unet.config.in_channels == 9  # not grown

    base9 = training_start(bases[9], None, "lora").unet.conv_in.weight
    for mode in ("full", "lora_conv_in"):
        for have, base in bases.items():
            weight = training_start(base, None, mode, in_channels=CHANNELS).unet.conv_in.weight
            assert weight.shape[1] == CHANNELS
            kept = base9 if have == 9 else base9[:, :4]
            assert torch.equal(weight[:, :have], kept)
            assert not weight[:, have:].any()

    assert TrainConfig.from_params({"mode": "lora_conv_in"}).mode == "lora_conv_in"
    # (an unknown mode: the params model's error, tests/test_params_model.py)


def test_a_bf16_step_trains_conv_in_in_fp32(
    bases: dict[int, Path], data: InpaintData, tmp_path: Path
) -> None:
    """What `--mixed_precision bf16` runs on a GPU: the frozen UNet in bf16, the adapters and
    conv_in in fp32 under bf16 autocast; saved and loaded as in fp32."""
    tuner = make_tuner(bases[9], data, mixed_precision="bf16")
    unet = unet_of(tuner)
    assert unet.conv_in.weight.dtype == torch.float32
    assert unet.conv_out.weight.dtype == torch.bfloat16  # frozen
    before = unet.conv_in.weight.detach().clone()
    for step in range(2):
        assert np.isfinite(tuner.train_step(step))
    weight = unet.conv_in.weight
    assert weight.dtype == torch.float32
    assert weight[:, INPAINT_CHANNELS:].abs().sum() > 0 and not torch.equal(weight, before)
    tuner.save(tmp_path / "inpaint")
    assert load_file(tmp_path / "inpaint" / CONV_IN_WEIGHTS)["weight"].dtype == torch.float32
    pipe = load_finetuned_inpainting(tmp_path / "inpaint", torch_dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16
    torch.testing.assert_close(pipe.unet.conv_in.weight, weight.detach().to(torch.bfloat16))
