"""The shape model: a sentence and a coarse body map in, a segmentation map out.

A small conditional UNet trained with cross-entropy (not a diffusion over maps): the map
the texture stage needs is one answer per pixel, the benchmark's sentences name a few
attributes in a handful of patterns, and a single forward pass costs milliseconds on a
CPU, so the whole stage fits the demo's 2-core budget. The sentence is a bag of words
(learned embeddings of the training captions' words, averaged): garment shape follows from
the attribute words (sleeve, category, gender), not from word order. Its vector modulates
every decoder level (FiLM: a per-channel scale and shift), so the same body can take a
dress's or a tee's outline.

Input: the coarse map (`fashion.shape.maps.coarse_maps`, 4 x c x c) resized to the work
size; output: 7-class logits at the benchmark's 128 px (the work size's logits, upsampled
bilinearly).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from fashion.core.stage import PipelineError
from fashion.shape.maps import COARSE_CLASSES, N_CLASSES, coarse_maps

WEIGHTS, CONFIG = "model.safetensors", "config.json"
WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
UNKNOWN = 1  # word id of a word not seen in training (0 pads)


def words(caption: str) -> list[str]:
    """The lower-case words of a caption ("long-sleeved" is one word)."""
    return WORD.findall(caption.lower())


def vocabulary(captions: list[str], min_count: int = 2) -> list[str]:
    """The words of `captions` seen at least `min_count` times, most frequent first (ties
    alphabetical)."""
    counts: dict[str, int] = {}
    for caption in captions:
        for word in words(caption):
            counts[word] = counts.get(word, 0) + 1
    kept = [w for w, n in counts.items() if n >= min_count]
    return sorted(kept, key=lambda w: (-counts[w], w))


@dataclass(frozen=True)
class ShapeConfig:
    vocab: tuple[str, ...]
    coarse_size: int = 8
    coarse_cells: str = "majority"
    work_size: int = 32
    width: int = 32
    text_dim: int = 64
    max_words: int = 24
    out_size: int = 128


def encode_captions(captions: list[str], cfg: ShapeConfig) -> torch.Tensor:
    """int64 (N, max_words) word ids (0: padding, 1: unknown, 2...: the vocabulary)."""
    index = {w: i + 2 for i, w in enumerate(cfg.vocab)}
    ids = np.zeros((len(captions), cfg.max_words), np.int64)
    for row, caption in enumerate(captions):
        found = [index.get(w, UNKNOWN) for w in words(caption)][: cfg.max_words]
        ids[row, : len(found)] = found
    return torch.from_numpy(ids)


class FiLMBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU; the text scales and shifts the output."""

    def __init__(self, c_in: int, c_out: int, text_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(min(8, c_out), c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(text_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)  # starts as the identity modulation
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm1(self.conv1(x)))
        x = self.norm2(self.conv2(x))
        scale, shift = self.film(text)[:, :, None, None].chunk(2, dim=1)
        return F.silu(x * (1 + scale) + shift)


class ShapeNet(nn.Module):
    """Coarse map (N, 4, c, c) + word ids (N, max_words) -> logits (N, 7, out, out)."""

    def __init__(self, cfg: ShapeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, t = cfg.width, cfg.text_dim
        self.embed = nn.Embedding(len(cfg.vocab) + 2, t, padding_idx=0)
        self.text = nn.Sequential(nn.Linear(t, t), nn.SiLU(), nn.Linear(t, t))
        c_in = len(COARSE_CLASSES) + 2  # + the pixel's row and column
        self.down = nn.ModuleList(
            [FiLMBlock(c_in, w, t), FiLMBlock(w, 2 * w, t), FiLMBlock(2 * w, 4 * w, t)]
        )
        self.middle = FiLMBlock(4 * w, 4 * w, t)
        self.up = nn.ModuleList(
            [FiLMBlock(8 * w, 2 * w, t), FiLMBlock(4 * w, w, t), FiLMBlock(2 * w, w, t)]
        )
        self.head = nn.Conv2d(w, N_CLASSES, 1)

    def text_vector(self, ids: torch.Tensor) -> torch.Tensor:
        present = (ids > 0).float()[..., None]
        mean = (self.embed(ids) * present).sum(1) / present.sum(1).clamp(min=1)
        return self.text(mean)

    def forward(self, coarse: torch.Tensor, ids: torch.Tensor, out: int | None = None):
        """Logits at `out` px (default: the maps' `out_size`; training uses a smaller size,
        its loss is the same up to the last upsampling and costs a quarter)."""
        size = self.cfg.work_size
        x = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        ramp = torch.linspace(-1, 1, size, device=x.device, dtype=x.dtype)
        rows, cols = ramp[None, None, :, None], ramp[None, None, None, :]
        x = torch.cat(
            [x, rows.expand(len(x), 1, size, size), cols.expand(len(x), 1, size, size)], 1
        )
        text = self.text_vector(ids.to(x.device))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2), text)
            skips.append(x)
        x = self.middle(F.avg_pool2d(x, 2), text)
        for block in self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skips.pop()], dim=1), text)
        logits = self.head(x)
        out = out or self.cfg.out_size
        return F.interpolate(logits, size=(out, out), mode="bilinear", align_corners=False)


@torch.no_grad()
def predict_maps(
    model: ShapeNet, coarse: np.ndarray, captions: list[str], batch: int = 256
) -> np.ndarray:
    """uint8 (N, out, out): the most likely class of each pixel, for coarse maps (N, 4, c, c)
    and their sentences."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = encode_captions(captions, model.cfg)
    out = []
    for start in range(0, len(captions), batch):
        part = slice(start, start + batch)
        x = torch.as_tensor(coarse[part], dtype=torch.float32, device=device)
        # the classes last: the argmax 6.6x faster (bench/reshape_step.py)
        logits = model(x, ids[part]).permute(0, 2, 3, 1).contiguous()
        out.append(logits.argmax(dim=-1).to(torch.uint8).cpu())
    model.train(was_training)
    side = model.cfg.out_size
    return torch.cat(out).numpy() if out else np.zeros((0, side, side), np.uint8)


def predict_target_maps(
    model: ShapeNet, segmentation: np.ndarray, sentences: list[str]
) -> np.ndarray:
    """uint8 (N, out, out): the maps `model` draws for each source segmentation's coarse map
    (as the model was trained on) and a target sentence."""
    cfg = model.cfg
    return predict_maps(
        model, coarse_maps(segmentation, cfg.coarse_size, cfg.coarse_cells), sentences
    )


def save_shape_model(model: ShapeNet, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out_dir / WEIGHTS)
    (out_dir / CONFIG).write_text(json.dumps(asdict(model.cfg), indent=1) + "\n")


def load_shape_model(model_dir: str | Path, device: torch.device | str = "cpu") -> ShapeNet:
    model_dir = Path(model_dir)
    if not (model_dir / WEIGHTS).is_file():
        raise PipelineError(f"{model_dir}: no {WEIGHTS} (run the reshape stage)")
    raw = json.loads((model_dir / CONFIG).read_text())
    model = ShapeNet(ShapeConfig(**{**raw, "vocab": tuple(raw["vocab"])}))
    model.load_state_dict(load_file(model_dir / WEIGHTS))
    return model.to(device).eval()
