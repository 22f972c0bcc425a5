"""Image metrics of generated garments: Inception Score, FID, KID, CLIP score, memorisation.

Inception metrics use torchmetrics with torch-fidelity's Inception-v3 loaded from a local
weights file (never downloaded here: see `inception_weights_path`). All images go through
one resize pipeline (`resize_images`) before any network sees them, so generated and real
sets differ only in content. CLIP embeddings (`fashion.clip_models.embed_images`) are
computed once per image set and reused for the CLIP score, the zero-shot attributes and
the nearest-training-image distances.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from fashion.config import PipelineError

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
# One line, on a connected machine: puts the file where `default_inception_weights` looks.
INCEPTION_FETCH_COMMAND = (
    'python -c "import torch; from torch_fidelity.feature_extractor_inceptionv3 import '
    'URL_INCEPTION_V3 as u; torch.hub.load_state_dict_from_url(u)"'
)


# --- one resize pipeline for every image set -------------------------------------------


def resize_images(images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3), bilinear with antialiasing."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    start = 0
    for batch in _batches(images, batch_size):
        x = nn.functional.interpolate(
            batch.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + len(x)] = x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        start += len(x)
    return out


def _batches(images: np.ndarray, batch_size: int) -> Iterator[Tensor]:
    """uint8 (B, 3, H, W) tensors, as Inception wants them, from uint8 (N, H, W, 3) images."""
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size])
        yield torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


# --- Inception-v3 weights ---------------------------------------------------------------


def default_inception_weights() -> Path:
    """Where torch hub caches torch-fidelity's Inception-v3 weights (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def inception_weights_path(param: str | None) -> Path:
    """The weights file named by the `evaluate.inception_weights` param, else the hub cache."""
    path = Path(param) if param else default_inception_weights()
    if not path.is_file():
        raise PipelineError(
            f"{path}: Inception-v3 weights not found. Fetch them on a connected machine with\n"
            f"  {INCEPTION_FETCH_COMMAND}\n"
            "and copy the file there (or set evaluate.inception_weights to its path), "
            "or set evaluate.skip_inception: true to record null for IS/FID/KID"
        )
    return path


def load_inception(weights: Path, feature: str) -> NoTrainInceptionV3:
    """torch-fidelity's Inception-v3 from a local file; `feature` is "logits_unbiased" or "2048"."""
    try:
        return NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[feature],
            feature_extractor_weights_path=str(weights),
        )
    except Exception as err:  # torch.load / load_state_dict on a wrong or damaged file
        raise PipelineError(f"{weights}: not torch-fidelity Inception-v3 weights ({err})") from err


# --- Inception Score, FID, KID ----------------------------------------------------------


@torch.no_grad()
def inception_score(
    images: np.ndarray, classifier: nn.Module, splits: int = 10, seed: int = 0, batch_size: int = 64
) -> tuple[float, float]:
    """(mean, std) IS over `splits` of uint8 (N, H, W, 3) images, shuffled with `seed`.

    `classifier` maps a uint8 batch to class logits: the Inception-v3 "logits_unbiased"
    in the stage, a stand-in in tests. Fewer images than splits: one split per image.
    """
    metric = InceptionScore(feature=classifier, splits=min(splits, len(images)))
    for batch in _batches(images, batch_size):
        metric.update(batch)
    with torch.random.fork_rng(devices=[]):  # compute() shuffles with the global RNG
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


@torch.no_grad()
def extract_features(images: np.ndarray, extractor: nn.Module, batch_size: int = 64) -> Tensor:
    """Features (N, D) of uint8 (N, H, W, 3) images, batch by batch (Inception pool3 here)."""
    return torch.cat([extractor(batch).double() for batch in _batches(images, batch_size)])


class _Precomputed(nn.Module):
    """Feature "extractor" for features computed already, so each image passes Inception once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def frechet_distance(fake: Tensor, real: Tensor) -> float:
    """FID between two feature sets (N, D), by torchmetrics (biased upwards on small sets)."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1])).double()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_distance(
    fake: Tensor, real: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) KID by torchmetrics; `subset_size` is cut to fit the smaller set."""
    size = min(subset_size, len(fake), len(real))
    if size < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(fake)} and {len(real)}")
    metric = KernelInceptionDistance(
        feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size
    )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


# --- CLIP score -------------------------------------------------------------------------


def clip_score(image_embeddings: Tensor, text_embeddings: Tensor) -> float:
    """torchmetrics' CLIP score from normalised pairs: max(100 * mean cosine, 0), on 0-100."""
    if len(image_embeddings) != len(text_embeddings):
        raise ValueError("CLIP score needs one caption per image")
    cosine = (image_embeddings * text_embeddings).sum(dim=-1)
    return max(float(100 * cosine.mean()), 0.0)


# --- memorisation -----------------------------------------------------------------------


def nearest_distances(queries: Tensor, references: Tensor, chunk: int = 4096) -> np.ndarray:
    """Cosine distance (1 - cos) from each normalised query to its nearest normalised reference."""
    best = torch.full((len(queries),), -1.0)
    for start in range(0, len(references), chunk):
        sims = queries @ references[start : start + chunk].T
        best = torch.maximum(best, sims.max(dim=1).values)
    return (1.0 - best).clamp(0.0, 2.0).numpy()  # rounding can put a copy's cosine above 1
