"""Fine-tuning an inpainting UNet: the SD fine-tuner (`fashion.sd.training`) with the two
inputs an inpainting UNet reads beside the noisy latents.

Each training image is masked, as diffusers' inpainting recipes do, by its garment mask (the
`redress.mask_classes` of its segmentation, dilated) or, with probability `random_mask_p`, by
a random rectangle or ellipse, so the model also learns to fill regions that are not garments.
The UNet then reads `cat([noisy latents, mask at latent size, latents of the image with the
mask blanked])`, the input `StableDiffusionInpaintPipeline` gives it at generation time: the
pixels in [-1, 1] with the masked ones set to 0, and the mask resized to the latents nearest.

Redress v2 (`maps` given) appends each image's own segmentation at latent size (one channel
per class, `fashion.shape.maps.latent_maps`), so the condition is real at training time and
the shape stage's prediction at redress time. As MGD does, the map is dropped (all zeros)
for a `map_dropout` share of the images, so the model also draws without one. And as
redress v2 redraws the source's and the target's garments together, a `mask_union_p` share
of the garment masks is joined with another training image's (less the image's own hair and
face): the mask then exceeds the garment, and only the map tells where the garment ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from fashion.core.provenance import write_source
from fashion.inpaint.masks import random_masks
from fashion.inpaint.unet import with_map_channels
from fashion.sd.config import TrainConfig
from fashion.sd.models import to_vae_pixels
from fashion.sd.training import FineTuner, TrainData
from fashion.shape.maps import KEPT, latent_maps


@dataclass
class InpaintData(TrainData):
    masks: np.ndarray  # bool (N, H, W): each image's garment mask, at the images' size
    maps: np.ndarray | None = None  # uint8 (N, H, W): each image's segmentation (v2), or None


def masked_pixels(images: np.ndarray, masks: np.ndarray, resolution: int) -> torch.Tensor:
    """Pixels in [-1, 1] at `resolution` with the masked ones 0, of uint8 images and bool
    masks, as the inpainting pipeline prepares its masked image."""
    mask = torch.from_numpy(np.ascontiguousarray(masks[:, None])).float()
    mask = F.interpolate(mask, size=(resolution, resolution), mode="nearest")
    return to_vae_pixels(np.ascontiguousarray(images), resolution) * (mask < 0.5)


class InpaintFineTuner(FineTuner):
    """`FineTuner` whose UNet also reads the mask and the masked image's latents."""

    def __init__(
        self,
        pipe: StableDiffusionPipeline,
        noise_sched: DDPMScheduler,
        cfg: TrainConfig,
        data: InpaintData,
        accelerator: Accelerator,
        source: str = "",
        random_mask_p: float = 0.25,
        mask_settings: dict[str, Any] | None = None,
        base: tuple[str, str | None] = ("", None),
        map_dropout: float = 0.0,
        mask_union_p: float = 0.0,
    ) -> None:
        """`mask_settings`: how the garment masks were made (classes, dilation), part of the
        checkpoints' fingerprint with `random_mask_p`. `base`: the (pretrained, revision) the
        fine-tune started from, recorded in the saved model's source.json."""
        self.random_mask_p = float(random_mask_p)
        self.map_dropout = float(map_dropout)
        self.mask_union_p = float(mask_union_p)
        self.sampling_maps: np.ndarray | None = None  # target maps a validation call reads
        self.mask_settings = mask_settings or {}
        self.base = base
        super().__init__(pipe, noise_sched, cfg, data, accelerator, source)

    @torch.no_grad()
    def _build_caches(self) -> None:
        """Also the latent distributions of every image under its garment mask (both
        orientations if flipping): only the random-mask images are encoded in the steps."""
        super()._build_caches()
        chunks = []
        for start in range(0, len(self.data.images), 64):
            part = slice(start, start + 64)
            views = [self._masked_latents(self.data.images[part], self.data.masks[part])]
            if self.cfg.random_flip:
                flipped = (self.data.images[part][:, :, ::-1], self.data.masks[part][:, :, ::-1])
                views.append(self._masked_latents(*flipped))
            chunks.append(torch.stack(views, dim=1))
        self.masked_cache = torch.cat(chunks)  # (N, views, 2 * latent channels, h, w)

    def _masked_latents(self, images: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        """The latent moments of the images with the masked pixels blanked (`encode`)."""
        return self.encode(masked_pixels(images, masks, self.cfg.resolution))

    def training_masks(
        self, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows' masks (unflipped) and which of them are not the cached garment masks:
        random shapes (`random_mask_p`) and, in v2, garment masks joined with another
        image's (`mask_union_p`)."""
        masks = self.data.masks[rows].copy()
        drawn = rng.random(len(rows)) < self.random_mask_p
        if drawn.any():
            masks[drawn] = random_masks(rng, int(drawn.sum()), masks.shape[-1])
        if self.data.maps is not None and self.mask_union_p:
            # v2's redress mask is the source's and the target's garments together: joined
            # here with another image's garment mask, the mask is larger than the garment,
            # and only the map says where it ends
            joined = ~drawn & (rng.random(len(rows)) < self.mask_union_p)
            if joined.any():
                others = rng.integers(0, len(self.data.masks), int(joined.sum()))
                kept = np.isin(self.data.maps[rows[joined]], KEPT)
                masks[joined] = (masks[joined] | self.data.masks[others]) & ~kept
                drawn = drawn | joined  # encoded afresh: a cache holds the garment masks only
        return masks, drawn

    def conditioning(
        self, rows: np.ndarray, flip: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor:
        masks, drawn = self.training_masks(rows, rng)
        masks[flip] = masks[flip][:, :, ::-1]
        # the images to encode: all of them, or with caches only the random-mask ones
        encoded = drawn if self.latent_cache is not None else np.ones(len(rows), bool)
        images = self.data.images[rows[encoded]].copy()
        images[flip[encoded]] = images[flip[encoded]][:, :, ::-1]
        with torch.no_grad():
            if self.latent_cache is not None:  # garment masks cached, random ones encoded
                params = self.masked_cache[
                    torch.as_tensor(rows), torch.as_tensor(flip.astype(np.int64))
                ]
                if drawn.any():
                    fresh = self._masked_latents(images, masks[drawn])
                    params[torch.as_tensor(drawn)] = fresh.to(params.dtype)
            else:
                params = self._masked_latents(images, masks)
            latents = DiagonalGaussianDistribution(params.float()).sample()  # noise in fp32
            latents = latents * self.vae.config.scaling_factor
        mask = torch.from_numpy(np.ascontiguousarray(masks[:, None])).float()
        small = F.interpolate(mask, size=latents.shape[-2:], mode="nearest")
        parts = [small.to(latents.device), latents]
        if self.data.maps is not None:
            maps = self.data.maps[rows].copy()
            maps[flip] = maps[flip][:, :, ::-1]
            shown = torch.from_numpy(rng.random(len(rows)) >= self.map_dropout).float()
            maps = latent_maps(maps, latents.shape[-1]) * shown[:, None, None, None]
            parts.append(maps.to(latents.device, latents.dtype))
        return torch.cat(parts, dim=1)

    def inference_pipeline(self, use_ema: bool) -> StableDiffusionInpaintPipeline:
        """On the current weights; while `sampling_maps` is set (validation, v2), its UNet
        reads them (`MapConditionedUNet`)."""
        components = super().inference_pipeline(use_ema).components
        pipe = StableDiffusionInpaintPipeline(**components, requires_safety_checker=False)
        if self.sampling_maps is None:
            return pipe
        pipe = with_map_channels(pipe)
        latent = self.cfg.resolution // pipe.vae_scale_factor
        pipe.unet.maps = latent_maps(self.sampling_maps, latent)
        return pipe

    def save(self, out_dir: Path) -> None:
        super().save(out_dir)
        write_source(out_dir, *self.base)

    def fingerprint(self) -> dict[str, Any]:
        return {
            **super().fingerprint(),
            "masks": {**self.mask_settings, "random_mask_p": self.random_mask_p},
            **(
                {"maps": {"map_dropout": self.map_dropout, "mask_union_p": self.mask_union_p}}
                if self.data.maps is not None
                else {}
            ),
        }
