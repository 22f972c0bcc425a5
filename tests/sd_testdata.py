"""Small subset files for the Stable Diffusion tests: demo drawings in the subset format."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from fashion.core.params import merged
from fashion.data.attributes import COLOR
from fashion.data.captions import TEMPLATES, compose_caption
from fashion.data.subset import STR_DTYPE
from fashion.demo.drawing import draw_garments

MULTICOLOR = next(c for c, n in COLOR.items() if n == "multicolor")


def random_codes(n: int, rng: np.random.Generator, multicolor: float = 0.33) -> np.ndarray:
    """(n, 4) gender, colour, sleeve, category codes; multicolour as skewed as the real data."""
    solid = [c for c in COLOR if c != MULTICOLOR]
    color = np.where(rng.random(n) < multicolor, MULTICOLOR, rng.choice(solid, n))
    return np.stack(
        [rng.integers(0, 2, n), color, rng.integers(1, 5, n), rng.integers(1, 20, n)], 1
    )


def write_subset(
    path: Path, n: int, seed: int = 0, multicolor: float = 0.33, pairs: bool = False
) -> Path:
    """A subset file of `n` drawn garments with captions in the benchmark's patterns; with
    `pairs`, a test file's redress targets too (a seeded permutation of its images)."""
    rng = np.random.default_rng(seed)
    codes = random_codes(n, rng, multicolor)
    images, segmentation = draw_garments(*codes.T, rng=rng)
    captions = [
        compose_caption(*map(int, c), TEMPLATES[i % len(TEMPLATES)]) for i, c in enumerate(codes)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["images"] = (images * 255).round().astype(np.uint8)
        f["segmentation"] = segmentation
        f["index"] = np.arange(n, dtype=np.int64)
        f.create_dataset(
            "name", data=[f"img/demo_{i // 2}/{i}.jpg" for i in range(n)], dtype=STR_DTYPE
        )
        f.create_dataset("caption", data=captions, dtype=STR_DTYPE)
        for k, name in enumerate(("gender", "color", "sleeve", "category")):
            f[name] = codes[:, k].astype(np.int16)
        word_ids = f.create_dataset("word_ids", (n,), dtype=h5py.vlen_dtype(np.int16))
        for i in range(n):
            word_ids[i] = np.arange(3, dtype=np.int16)
        if pairs:
            f["redress_target"] = np.random.default_rng([seed, 7]).permutation(n).astype(np.int64)
    return path


# The SD training stages' tiny run: 4 steps, checkpoints and validation images every 2.
TINY_TRAINING = {
    "batch_size": 8,
    "steps": 4,
    "checkpoint_every": 2,
    "eval_every": 2,
    "warmup_steps": 0,
}
# Small enough that each stage runs in seconds on 2 CPU cores.
TINY_SD_PARAMS = {
    "split": {"validation_images": 4},  # two products of two images
    "reference": {"n_images": 2},
    "evaluate": {"skip_inception": True},  # hermetic: no weights download from a test
    "base_sd": {
        "tiny": {
            "resolution": 32,
            "vocab_size": 300,
            "max_length": 16,
            "text_width": 32,
            "text_layers": 1,
            "text_heads": 2,
            "vae_channels": [8, 16],
            "unet_channels": [32, 64],
            "unet_layers": 1,
            "unet_head_dim": 16,
        },
        "vae_pretraining": {"steps": 2, "batch_size": 8},
    },
    "sd_training": {
        "resolution": 32,
        "validation_denoising_steps": 2,
        "validation_prompts": ["the lady is wearing a red dress.", "a man in a blue coat"],
    },
    "finetune_sd": TINY_TRAINING,
    "finetune_inpaint": TINY_TRAINING,
    "reshape": {
        "steps": 4,
        "batch_size": 8,
        "width": 8,
        "text_dim": 16,
        "min_word_count": 1,
        "eval_every": 2,
        "checkpoint_every": 2,
        "warmup_steps": 0,
        "grid_rows": 3,
    },
    "redress": {
        "n_images": "all",
        "denoising_steps": 2,
        "batch_size": 8,
        "resolution": 32,
        "grid_rows": 3,
    },
    "generate": {
        "resolution": 32,
        "denoising_steps": 2,
        "batch_size": 8,
        "grid_columns": 2,
        "prompts": {
            "genders": ["female"],
            "colors": ["red", "blue"],
            "sleeves": ["long-sleeved"],
            "categories": ["tee"],
            "free_form": ["a green coat"],
            "seed": 0,
        },
        "prompts_file": None,  # tests of prompt files write their own
    },
}


def update_sd_stage(params: dict, stage: str, changed: dict) -> None:
    """Set `changed` keys of an SD fine-tuning stage where they live: in `sd_training` (the
    recipe both stages share) when that holds them, else in the stage's own section."""
    for key, value in changed.items():
        params["sd_training" if key in params["sd_training"] else stage][key] = value


def make_sd_project(
    dest: Path, root: Path, n_train: int = 24, overrides: dict | None = None
) -> Path:
    """A folder with params.yaml (the repo's, made tiny) and a drawn subset, for stage runs."""
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    params = merged(merged(params, TINY_SD_PARAMS), overrides or {})
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_subset(dest / "data/subset/train.h5", n_train, seed=0)
    write_subset(dest / "data/subset/test.h5", 8, seed=1, pairs=True)
    return dest
