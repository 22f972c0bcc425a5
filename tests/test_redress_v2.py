"""Redress v2's texture side: the map channels start at zero (the 9-channel model's output,
in the UNet and through diffusers' inpainting pipeline), the fine-tuner feeds each image's
own map, and the map the shape model draws is the one the UNet receives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from diffusers import StableDiffusionInpaintPipeline
from PIL import Image

import redress
from fashion.data.subset import read_segmentation, read_table
from fashion.inpaint.redress import redress_inputs
from fashion.inpaint.unet import MapConditionedUNet, grown_unet, inpainting_unet, with_map_channels
from fashion.sd.models import build_tiny_sd
from fashion.shape.maps import N_CLASSES, latent_maps
from fashion.shape.model import ShapeNet, load_shape_model, predict_target_maps, save_shape_model
from sd_testdata import TINY_SD_PARAMS
from test_inpaint_training import trained_project

CAPTIONS = ["the lady wore a red dress.", "the man wore a blue tee."]
TEST = Path("data/subset/test.h5")


@pytest.fixture(scope="module")
def nine_channels() -> StableDiffusionInpaintPipeline:
    tiny = build_tiny_sd(CAPTIONS * 4, TINY_SD_PARAMS["base_sd"]["tiny"], seed=0)
    tiny.unet = inpainting_unet(tiny.unet)
    with torch.no_grad():  # a trained-looking mask / masked-image part, not zeros
        tiny.unet.conv_in.weight[:, 4:].normal_(0, 0.1)
    components = {**tiny.components, "safety_checker": None, "feature_extractor": None}
    return StableDiffusionInpaintPipeline(**components, requires_safety_checker=False)


def test_zero_map_channels_reproduce_the_nine_channel_unet(nine_channels) -> None:
    unet = nine_channels.unet.eval()
    grown = grown_unet(unet, 9 + N_CLASSES).eval()
    assert grown.conv_in.in_channels == 16 and unet.conv_in.in_channels == 9  # a copy
    torch.manual_seed(0)
    x, t = torch.randn(2, 9, 8, 8), torch.tensor([5, 900])
    hidden = torch.randn(2, 16, unet.config.cross_attention_dim)
    with torch.no_grad():
        expected = unet(x, t, hidden).sample
        for scale in (0.0, 1.0, 100.0):
            maps = torch.rand(2, N_CLASSES, 8, 8) * scale
            out = grown(torch.cat([x, maps], 1), t, hidden).sample
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_the_pipeline_with_zero_map_channels_draws_what_the_nine_channel_one_does(
    nine_channels,
) -> None:
    """Through diffusers' pipeline (classifier-free guidance doubles the batch: both halves
    get the map), with any map, the images are the 9-channel pipeline's."""
    images = [Image.fromarray(np.full((32, 32, 3), 90 * i, np.uint8)) for i in (1, 2)]
    mask = [Image.fromarray(np.tri(32, dtype=np.uint8) * 255)] * 2
    call = dict(
        prompt=CAPTIONS, image=images, mask_image=mask, height=32, width=32,
        num_inference_steps=2, guidance_scale=5.0, output_type="np",
    )  # fmt: skip
    nine_channels.set_progress_bar_config(disable=True)
    expected = nine_channels(**call, generator=torch.Generator().manual_seed(0)).images
    components = {**nine_channels.components, "unet": grown_unet(nine_channels.unet, 16)}
    grown = with_map_channels(StableDiffusionInpaintPipeline(**components))
    assert isinstance(grown.unet, MapConditionedUNet)
    grown.set_progress_bar_config(disable=True)
    seen = []
    grown.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    side = 32 // grown.vae_scale_factor  # the latents'
    grown.unet.maps = torch.rand(2, N_CLASSES, side, side)
    out = grown(**call, generator=torch.Generator().manual_seed(0)).images
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert seen[0][0] == 4  # the guided batch: unconditional and conditional halves
    grown.unet.maps = torch.rand(3, N_CLASSES, side, side)
    with pytest.raises(ValueError, match="4 latents for 3 maps"):
        grown(**call, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def inpaint_project(sd_finetuned_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_project(sd_finetuned_project, tmp_path_factory)


def test_finetune_inpaint_v2_grows_the_unet_by_the_maps(inpaint_project: Path) -> None:
    config = (inpaint_project / "models/inpaint/unet/config.json").read_text()
    assert '"in_channels": 16' in config
    grids = list((inpaint_project / "dvclive/finetune_inpaint/plots/images").rglob("*.png"))
    assert grids
    # v2's grid: the target map above each input and output (3 rows of the 128 px images)
    assert np.asarray(Image.open(grids[0])).shape[0] == 3 * 128


def test_the_unet_receives_the_map_the_shape_model_draws(
    inpaint_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trap: record what the fine-tuned UNet is given beside its 9 channels, for the tiny
    project's shape model and for another one; each must be that model's maps."""
    project = tmp_path / "p"
    shutil.copytree(inpaint_project, project)
    monkeypatch.chdir(project)
    received: list[torch.Tensor] = []
    forward = MapConditionedUNet.forward

    def recording(self, sample, *args, **kwargs):
        received.append(self.maps.clone())
        return forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(MapConditionedUNet, "forward", recording)
    drawn = {}
    for name, seed in (("trained", None), ("other", 5)):
        if seed is not None:  # another shape model in its place: other maps must follow
            torch.manual_seed(seed)
            other = ShapeNet(load_shape_model("models/shape").cfg)
            for p in other.parameters():
                torch.nn.init.normal_(p, 0, 0.5)
            save_shape_model(other, Path("models/shape"))
        received.clear()
        AcceleratorState._reset_state(True)
        redress.main()
        with np.load("data/redressed/inputs.npz") as inputs:
            maps = inputs["maps"]
        import pandas as pd

        manifest = pd.read_csv("data/redressed/manifest.csv")
        rows = manifest[manifest.model == "finetuned"].sort_values("pair")
        seg = read_segmentation(TEST, rows.source_row.to_numpy())
        sentences = read_table(TEST)["caption"].iloc[rows.target_row].tolist()
        expected = predict_target_maps(load_shape_model("models/shape"), seg, sentences)
        np.testing.assert_array_equal(maps, expected)
        latent = received[0].shape[-1]
        torch.testing.assert_close(received[0], latent_maps(maps, latent)[: len(received[0])])
        drawn[name] = maps
    assert (drawn["trained"] != drawn["other"]).any()


def test_v1_redresses_without_maps(nine_channels) -> None:
    seg = np.zeros((2, 128, 128), np.uint8)
    seg[:, 40:90, 50:80] = 3
    inputs = redress_inputs(seg, CAPTIONS, {"version": "v1", "mask_classes": ["upper clothes"],
                                            "mask_dilation": 0})  # fmt: skip
    assert inputs.maps is None and inputs.masks.sum() == 2 * 50 * 30
    with pytest.raises(Exception, match="redress.version must be one of"):
        redress_inputs(seg, CAPTIONS, {"version": "v3", "mask_classes": ["upper clothes"],
                                       "mask_dilation": 0})  # fmt: skip


def test_v2_training_masks_join_another_garment_and_keep_hair_and_face() -> None:
    """As redress v2's mask joins two garments, training masks join each image's garment mask
    with another image's: larger than the garment, never over the image's hair or face."""
    from types import SimpleNamespace

    from fashion.inpaint.training import InpaintData, InpaintFineTuner

    maps = np.zeros((6, 32, 32), np.uint8)
    maps[:, 2:6, 12:20] = 1  # hair
    maps[:, 6:10, 12:20] = 2  # face
    for i in range(6):
        maps[i, 10 : 14 + 3 * i, 10:22] = 3  # garments of different lengths
    masks = maps == 3
    masks[:, 8:10] = True  # a dilated garment mask reaching into the face
    data = InpaintData(np.zeros((6, 32, 32, 3), np.uint8), ["x"] * 6, masks, maps)
    tuner = SimpleNamespace(data=data, random_mask_p=0.0, mask_union_p=1.0)
    rows = np.arange(6)
    joined, fresh = InpaintFineTuner.training_masks(tuner, rows, np.random.default_rng(0))
    assert fresh.all()  # none of them is the cached garment mask
    assert not joined[np.isin(maps, [1, 2])].any()  # hair and face never redrawn
    assert (joined | (masks & (maps != 2)) == joined).all()  # the own garment stays inside
    assert (joined.sum(axis=(1, 2)) > (maps == 3).sum(axis=(1, 2))).any()  # and room beyond it
    tuner.mask_union_p = 0.0  # v1's masks: the garment masks as they are, from the cache
    same, fresh = InpaintFineTuner.training_masks(tuner, rows, np.random.default_rng(0))
    assert not fresh.any() and (same == masks).all()


def test_v1_trains_nine_channels_and_a_mismatched_model_is_refused(
    inpaint_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redress.version v1 end to end (no map channels, a four-column grid); a model trained
    for the other version stops redress with a one-line error naming the param."""
    import yaml

    import finetune_inpaint
    from fashion.core.stage import PipelineError

    project = tmp_path / "p"
    shutil.copytree(inpaint_project, project)
    monkeypatch.chdir(project)
    v2_model = Path("models/inpaint_v2")
    shutil.copytree("models/inpaint", v2_model)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["redress"]["version"] = "v1"
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    AcceleratorState._reset_state(True)
    finetune_inpaint.main()
    assert '"in_channels": 9' in Path("models/inpaint/unet/config.json").read_text()
    AcceleratorState._reset_state(True)
    redress.main()
    with np.load("data/redressed/inputs.npz") as inputs:
        assert set(inputs.files) == {"masks"}
    assert Image.open("plots/redress/grid.png").width == 4 * 128
    shutil.rmtree("models/inpaint")
    v2_model.rename("models/inpaint")
    with pytest.raises(PipelineError, match="trained for redress v2.*redress.version v1"):
        redress.main()
