"""The 9-channel inpainting UNet grown from a text-to-image one (fashion.inpaint.unet), on the
tiny SD of the tests: same output at first, original untouched, new channels trainable, and
accepted by diffusers' inpainting pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
from PIL import Image

from fashion.inpaint.masks import random_masks
from fashion.inpaint.unet import inpainting_unet
from fashion.sd.models import build_tiny_sd
from sd_testdata import TINY_SD_PARAMS

CAPTIONS = ["the lady wore a red dress.", "the man wore a blue tee."]


@pytest.fixture(scope="module")
def tiny_sd():
    return build_tiny_sd(CAPTIONS * 4, TINY_SD_PARAMS["base_sd"]["tiny"], seed=0)


def inputs(pipe, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, timesteps and caption states for two images."""
    torch.manual_seed(0)
    ids = pipe.tokenizer(CAPTIONS, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
    return torch.randn(2, 4, size, size), torch.tensor([10, 700]), hidden


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_grown_unet_predicts_what_the_original_does_whatever_the_extra_channels(tiny_sd) -> None:
    unet = tiny_sd.unet.eval()
    grown = inpainting_unet(unet).eval()
    assert grown.config.in_channels == 9 and grown.conv_in.in_channels == 9
    latents, t, hidden = inputs(tiny_sd)
    with torch.no_grad():
        expected = unet(latents, t, hidden).sample
        for scale in (0.0, 1.0, 1e3):
            extra = torch.randn(2, 5, *latents.shape[2:]) * scale
            out = grown(torch.cat([latents, extra], 1), t, hidden).sample
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_growing_and_training_leave_the_original_untouched(tiny_sd) -> None:
    unet = tiny_sd.unet
    before = weights(unet)
    grown = inpainting_unet(unet).train()
    latents, t, hidden = inputs(tiny_sd)
    extra = torch.randn(2, 5, *latents.shape[2:])
    optimizer = torch.optim.SGD(grown.parameters(), lr=0.1)
    loss = grown(torch.cat([latents, extra], 1), t, hidden).sample.square().mean()
    loss.backward()
    assert grown.conv_in.weight.grad[:, 4:].abs().sum() > 0  # the zero channels get gradients
    optimizer.step()

    assert unet.config.in_channels == 4 and unet.conv_in.in_channels == 4
    after = weights(unet)
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name
    grown.eval()
    with torch.no_grad():
        with_extra = grown(torch.cat([latents, extra], 1), t, hidden).sample
        without = grown(torch.cat([latents, torch.zeros_like(extra)], 1), t, hidden).sample
    assert not torch.allclose(with_extra, without)  # the mask channels now matter


def test_grown_unet_keeps_the_trainable_flags_and_every_other_weight(tiny_sd) -> None:
    unet = tiny_sd.unet
    unet.requires_grad_(False)
    try:
        grown = inpainting_unet(unet)
    finally:
        unet.requires_grad_(True)
    assert not any(p.requires_grad for p in grown.parameters())
    original, copied = unet.state_dict(), grown.state_dict()
    assert original.keys() == copied.keys()
    for name, value in original.items():
        if name == "conv_in.weight":
            assert torch.equal(copied[name][:, :4], value)
            assert not copied[name][:, 4:].any()
        else:
            assert torch.equal(copied[name], value), name
            assert copied[name].data_ptr() != value.data_ptr()  # copies, not shared tensors


def test_grown_unet_saves_and_loads_as_a_9_channel_unet(tiny_sd, tmp_path: Path) -> None:
    grown = inpainting_unet(tiny_sd.unet).eval()
    grown.save_pretrained(tmp_path / "unet")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config.in_channels == 9
    latents, t, hidden = inputs(tiny_sd)
    x = torch.cat([latents, torch.randn(2, 5, *latents.shape[2:])], 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, hidden).sample, grown(x, t, hidden).sample)


def test_only_a_text_to_image_unet_is_grown(tiny_sd) -> None:
    with pytest.raises(ValueError, match="in_channels=9"):
        inpainting_unet(inpainting_unet(tiny_sd.unet))


def test_the_inpainting_pipeline_accepts_the_grown_unet(tiny_sd) -> None:
    pipe = StableDiffusionInpaintPipeline(
        vae=tiny_sd.vae,
        text_encoder=tiny_sd.text_encoder,
        tokenizer=tiny_sd.tokenizer,
        unet=inpainting_unet(tiny_sd.unet),
        scheduler=tiny_sd.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.fromarray(random_masks(rng, 1, 64)[0].astype(np.uint8) * 255)
    out = pipe(
        CAPTIONS[0],
        image=image,
        mask_image=mask,
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (1, 64, 64, 3)
    assert np.isfinite(out).all()
