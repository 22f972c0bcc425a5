"""Image-caption pairs of a subset file, batched for CLIP training and evaluation.

Training batches are chosen by `fashion.train.batches.StepBatches` (a pure function of seed
and step); `make_batch` turns a batch's rows into model inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPProcessor

from fashion.core.stage import PipelineError
from fashion.data.attributes import ATTRIBUTES
from fashion.data.subset import read_images, read_table


@dataclass
class Pairs:
    """Rows of one subset split: uint8 images (in memory) with their captions and codes."""

    images: np.ndarray  # uint8 (n, h, w, 3)
    captions: list[str]
    caption_ids: np.ndarray  # int64 (n,): equal ids <=> identical caption text
    codes: dict[str, np.ndarray]  # attribute -> raw codes (n,)

    def __len__(self) -> int:
        return len(self.captions)

    def take(self, rows: np.ndarray) -> Pairs:
        rows = np.asarray(rows)
        return Pairs(
            self.images[rows],
            [self.captions[i] for i in rows],
            self.caption_ids[rows],
            {k: v[rows] for k, v in self.codes.items()},
        )


def read_pairs(path: str | Path, rows: np.ndarray | None = None) -> Pairs:
    """Pairs of a subset file (all rows, or the given ones in that order)."""
    table = read_table(path)
    if len(table) == 0:
        raise PipelineError(f"{path}: the split holds no images")
    if rows is not None:
        table = table.iloc[rows].reset_index(drop=True)
    images = read_images(path, rows)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise PipelineError(
            f"{path}: images must be uint8 (n, h, w, 3), got {images.dtype} {images.shape}"
        )
    captions = table["caption"].tolist()
    _, caption_ids = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    codes = {k: table[k].to_numpy() for k in ATTRIBUTES}
    return Pairs(images, captions, caption_ids.astype(np.int64), codes)


def pixel_values(
    processor: CLIPProcessor, images: np.ndarray, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 HWC images -> the model's pixel values on `device`, by the model's own image
    processor (the torchvision one computes them there; a PIL one ignores `device`)."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    processed = processor.image_processor(images=batch, return_tensors="pt", device=device)
    return processed["pixel_values"].to(device)


def presize(processor: CLIPProcessor, images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """uint8 HWC images resized and cropped once by the processor when its size is smaller.

    The processor resizes uint8 images to uint8, so `pixel_values` of the presized images
    equals that of the originals exactly, without a resize in every training step. Images
    the processor would enlarge (128 px for a 224 px CLIP) are returned as they are: kept
    small in memory, enlarged batch by batch.
    """
    crop = processor.image_processor.crop_size
    if images.shape[1] <= crop["height"] and images.shape[2] <= crop["width"]:
        return images
    out = []
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk]))
        resized = processor.image_processor(
            images=batch.permute(0, 3, 1, 2), do_rescale=False, do_normalize=False,
            return_tensors="pt",
        )["pixel_values"]  # fmt: skip
        if resized.dtype != torch.uint8:  # a processor that resizes to floats: not exact
            return images
        out.append(resized.permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def text_inputs(processor: CLIPProcessor, captions: list[str]) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask, padded to the longest caption, cut at the model's length."""
    return processor.tokenizer(captions, padding=True, truncation=True, return_tensors="pt").data


def make_batch(processor: CLIPProcessor, pairs: Pairs, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """One training batch: pixel values, tokens and caption ids (for caption-level targets)."""
    return {
        "pixel_values": pixel_values(processor, pairs.images[rows]),
        **text_inputs(processor, [pairs.captions[i] for i in rows]),
        "caption_ids": torch.from_numpy(pairs.caption_ids[rows]),
    }


class BatchMaker:
    """`make_batch` of `pairs` with what every step would repeat done once: each caption
    tokenised, a batch taking its rows cut to its longest caption (what the tokenizer pads a
    batch to), and the pixel values of every image when they fit `pixel_budget` bytes (the
    tiny CLIP's 32 px inputs of the demo's 14,002 images: 172 MB; a 224 px CLIP enlarges the
    128 px images per batch instead). The batches equal `make_batch`'s exactly; a batch of
    128 takes 0.22 ms instead of 9.1 ms on 2 CPU cores, of a ~70 ms step
    (`bench/clip_batches.py`)."""

    def __init__(self, processor: CLIPProcessor, pairs: Pairs, pixel_budget: int = 1 << 30) -> None:
        self.processor, self.pairs = processor, pairs
        self.tokens = None
        if processor.tokenizer.padding_side == "right":  # then cutting a row keeps its tokens
            captions = np.asarray(pairs.captions, dtype=object)
            unique, inverse = np.unique(captions, return_inverse=True)
            encoded = text_inputs(processor, unique.tolist())
            self.tokens = {k: v[torch.from_numpy(inverse)] for k, v in encoded.items()}
        crop = processor.image_processor.crop_size
        size = 4 * 3 * crop["height"] * crop["width"] * len(pairs)
        small = pairs.images.shape[1:3] == (crop["height"], crop["width"])
        self.pixels = None
        if small and size <= pixel_budget:
            self.pixels = torch.cat(
                [pixel_values(processor, pairs.images[i : i + 1024]) for i in
                 range(0, len(pairs), 1024)]
            )  # fmt: skip

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        index = torch.from_numpy(np.asarray(rows))
        if self.tokens is None:
            text = text_inputs(self.processor, [self.pairs.captions[i] for i in rows])
        else:
            longest = int(self.tokens["attention_mask"][index].sum(1).max())
            text = {k: v[index, :longest] for k, v in self.tokens.items()}
        pixels = (
            pixel_values(self.processor, self.pairs.images[rows])
            if self.pixels is None
            else self.pixels[index]
        )
        return {
            "pixel_values": pixels,
            **text,
            "caption_ids": torch.from_numpy(self.pairs.caption_ids[rows]),
        }
