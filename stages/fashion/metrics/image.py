"""Image metrics of generated garments: Inception Score, FID, KID, CLIP score, memorisation.

Inception metrics use torchmetrics with torch-fidelity's Inception-v3, loaded from a local
weights file that `fetch_inception_weights` downloads (hash checked) the first time. One
Inception pass per image set gives both the IS logits and the pool features (`load_inception`,
`extract_features`); IS, FID and KID are then computed from those features. All images
go through one resize pipeline (`resize_images`) before any network sees them, so generated
and real sets differ only in content. CLIP embeddings (`fashion.clip.models.embed_images`)
are computed once per image set and reused for the CLIP score and the zero-shot attributes;
memorisation is measured in pixels (`nearest_pixel_distances`). `save_arrays` /
`load_arrays` hold the real-image reference between stages.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from http.client import HTTPException
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.hub import HASH_REGEX, download_url_to_file
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from fashion.core.atomic import atomic_path
from fashion.core.params_model import check_params
from fashion.core.processes import Processes
from fashion.core.stage import PipelineError

INCEPTION_WEIGHTS_FILE = URL_INCEPTION_V3.rsplit("/", 1)[1]
# torch hub's convention: the file name ends in the first hex digits of its SHA-256
INCEPTION_SHA256_PREFIX = HASH_REGEX.search(INCEPTION_WEIGHTS_FILE).group(1)
# One line, on a connected machine: puts the file where `default_inception_weights` looks.
INCEPTION_FETCH_COMMAND = (
    'python -c "import torch; from torch_fidelity.feature_extractor_inceptionv3 import '
    'URL_INCEPTION_V3 as u; torch.hub.load_state_dict_from_url(u)"'
)
# IS logits and FID/KID pool features, in the order the `load_inception` model returns them
INCEPTION_OUTPUTS = ("logits_unbiased", "2048")


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


class InceptionUnavailable(PipelineError):
    """The weights are neither on disk nor downloadable here (offline, refused, cut off)."""

    def __init__(self, message: str, path: Path, reason: str) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


def _weights_not_found(path: Path, reason: str = "") -> InceptionUnavailable:
    return InceptionUnavailable(
        f"{path}: Inception-v3 weights not found{reason}. Fetch them on a connected machine with\n"
        f"  {INCEPTION_FETCH_COMMAND}\n"
        "and copy the file there (or set evaluate.inception_weights to its path), "
        "or set evaluate.skip_inception: true to record null for IS/FID/KID",
        path,
        reason,
    )


def inception_weights_path(param: str | None) -> Path:
    """The weights file named by the `evaluate.inception_weights` param, else the hub cache."""
    path = Path(param) if param else default_inception_weights()
    if not path.is_file():
        raise _weights_not_found(path)
    return path


def fetch_inception_weights(param: str | None) -> Path:
    """`inception_weights_path`, downloading the file from torch-fidelity's release first
    when it is absent. The download lands in place only whole and with the published hash."""
    path = Path(param) if param else default_inception_weights()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading Inception-v3 weights to {path}")
    try:
        download_url_to_file(URL_INCEPTION_V3, str(path), hash_prefix=INCEPTION_SHA256_PREFIX)
    except RuntimeError as err:  # torch hub's hash check
        raise PipelineError(
            f"{URL_INCEPTION_V3}: the download does not match the published SHA-256, "
            f"nothing saved to {path} ({err})"
        ) from err
    except (OSError, HTTPException) as err:  # offline, refused, cut off (URLError is an OSError)
        reason = f" and the download from {URL_INCEPTION_V3} failed ({err})"
        raise _weights_not_found(path, reason) from err
    return path


# What re-runs the Inception stages once the weights are there (the params did not change).
RERUN_INCEPTION = "dvc repro --force --single-item reference evaluate evaluate_redress"


def inception_weights(p: dict[str, Any], stage: str) -> Path | None:
    """The Inception-v3 weights as `evaluate.skip_inception` (in `p`, the evaluate params)
    asks: None for true; for false, the file, fetched when absent (else an error); for auto,
    the same, or None with one warning line when they cannot be fetched here. The params are
    the same either way, so DVC sees no change when the network comes back: the warning
    gives the command that re-runs the Inception stages."""
    mode = p["skip_inception"]
    check_params({"evaluate": {"skip_inception": mode}})  # true, false or auto: the model's
    if mode is True:
        print(f"{stage}: IS/FID/KID null (evaluate.skip_inception is true: no Inception-v3 used)")
        return None
    try:
        return fetch_inception_weights(p["inception_weights"])
    except InceptionUnavailable as err:
        if mode is False:
            raise
        print(f"warning: {stage}: IS/FID/KID recorded as null: evaluate.skip_inception is auto "
              f"and the Inception-v3 weights are not at {err.path}{err.reason}; put the file "
              f"there (or set evaluate.inception_weights), then: {RERUN_INCEPTION}",
              file=sys.stderr)  # fmt: skip
        return None


def inception_mode(p: dict[str, Any], computed: bool) -> str:
    """What a metrics file records of its IS/FID/KID: computed, skipped (the param is true)
    or unavailable (auto, and the weights could not be had here)."""
    if computed:
        return "computed"
    return "skipped" if p["skip_inception"] is True else "unavailable"


class InceptionFeatures(NoTrainInceptionV3):
    """torchmetrics' Inception-v3 returning every feature of `features_list` from one pass
    (its own `forward` returns only the first), each flattened to (B, D)."""

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(f.reshape(len(x), -1) for f in self._torch_fidelity_forward(x))


def load_inception(weights: Path, device: torch.device | str = "cpu") -> InceptionFeatures:
    """torch-fidelity's Inception-v3 from a local file, giving `INCEPTION_OUTPUTS`."""
    try:
        model = InceptionFeatures(
            name="inception-v3-compat",
            features_list=list(INCEPTION_OUTPUTS),
            feature_extractor_weights_path=str(weights),
        )
    except Exception as err:  # torch.load / load_state_dict on a wrong or damaged file
        raise PipelineError(f"{weights}: not torch-fidelity Inception-v3 weights ({err})") from err
    return model.to(device)


@torch.no_grad()
def extract_features(
    images: np.ndarray,
    extractor: nn.Module,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, ...]:
    """Every output of `extractor` (a tensor or a tuple of them per uint8 batch) for uint8
    (N, H, W, 3) images, batch by batch on `device`; each (N, D), on the CPU."""
    outputs: list[tuple[Tensor, ...]] = []
    for batch in _batches(images, batch_size):
        out = extractor(batch.to(device))
        outputs.append(tuple(o.cpu() for o in (out if isinstance(out, tuple) else (out,))))
    return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))


def shared_features(
    images: np.ndarray,
    extractor: nn.Module,
    batch_size: int,
    device: torch.device | str,
    processes: Processes,
) -> tuple[Tensor, ...]:
    """`extract_features`, each process on its share of whole batches, gathered on every
    process (a collective): the same tensors as one process computing them all."""
    parts = processes.map_batches(
        lambda part: extract_features(images[part], extractor, batch_size, device),
        len(images),
        batch_size,
    )
    return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))


# --- Inception Score, FID, KID ----------------------------------------------------------


# The features are whole on every process already (`shared_features`): under several
# processes torchmetrics would otherwise gather every process's copy into one set.
LOCAL = {"sync_on_compute": False}


class _Precomputed(nn.Module):
    """Feature "extractor" for features computed already, so each image passes Inception once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def inception_score(logits: Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """(mean, std) IS over `splits` of class logits (N, C), shuffled with `seed`, by torchmetrics.

    The logits are Inception-v3's "logits_unbiased" in the stage, a stand-in's in tests.
    Fewer images than splits: one split per image.
    """
    metric = InceptionScore(
        feature=_Precomputed(logits.shape[1]), splits=min(splits, len(logits)), **LOCAL
    )
    metric.update(logits)
    with torch.random.fork_rng(devices=[]):  # compute() shuffles with the global RNG
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def frechet_distance(fake: Tensor, real: Tensor) -> float:
    """FID between two feature sets (N, D), by torchmetrics (biased upwards on small sets)."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), **LOCAL).double()
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(
    fake: Tensor, real: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) KID by torchmetrics; `subset_size` is cut to fit the smaller set."""
    size = min(subset_size, len(fake), len(real))
    if size < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(fake)} and {len(real)}")
    metric = KernelInceptionDistance(
        feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size, **LOCAL
    )
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def fid_kid(fake: Tensor, real: Tensor, params: dict[str, Any]) -> dict[str, float]:
    """FID and KID (mean, std) of pool features `fake` against `real`, with the `evaluate`
    params' KID subsets and seed."""
    kid, kid_std = kernel_distance(
        fake, real, int(params["kid_subsets"]), int(params["kid_subset_size"]), int(params["seed"])
    )
    return {"fid": frechet_distance(fake, real), "kid": kid, "kid_std": kid_std}


# --- reference arrays shared between stages ---------------------------------------------


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays to an uncompressed .npz, all or nothing."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # a file object: numpy adds no ".npz" to the temporary name


def load_arrays(path: Path, keys: Iterable[str], stage: str) -> dict[str, np.ndarray]:
    """Every array of a .npz written by `stage`, which must hold `keys`; errors name the file."""
    if not path.is_file():
        raise PipelineError(f"{path}: not found (run the {stage} stage)")
    try:
        with np.load(path) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise PipelineError(f"{path}: missing arrays {missing} (re-run the {stage} stage)")
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise PipelineError(f"{path}: not a readable .npz file ({err})") from err


# --- CLIP score -------------------------------------------------------------------------


def clip_score(image_embeddings: Tensor, text_embeddings: Tensor) -> float:
    """torchmetrics' CLIP score from normalised pairs: max(100 * mean cosine, 0), on 0-100."""
    if len(image_embeddings) != len(text_embeddings):
        raise ValueError("CLIP score needs one caption per image")
    cosine = (image_embeddings * text_embeddings).sum(dim=-1)
    return max(float(100 * cosine.mean()), 0.0)


# --- memorisation -----------------------------------------------------------------------


def nearest_pixel_distances(
    queries: np.ndarray, references: np.ndarray, device: str = "cpu", chunk: int = 2048
) -> np.ndarray:
    """Root-mean-square pixel difference, on a 0-1 scale, from each uint8 (n, h, w, 3) query
    image to its nearest reference image of the same size: 0 for a copy."""
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(f"images of shape {queries.shape[1:]} vs {references.shape[1:]}")

    def flat(images: np.ndarray) -> Tensor:
        return torch.from_numpy(images.reshape(len(images), -1)).to(device).float() / 255

    q = flat(queries)
    q_sq = (q * q).sum(1, keepdim=True)
    best = torch.full((len(q),), float("inf"), device=device)
    for start in range(0, len(references), chunk):
        r = flat(references[start : start + chunk])
        squared = q_sq + (r * r).sum(1)[None] - 2 * q @ r.T
        best = torch.minimum(best, squared.min(dim=1).values)
    return (best.clamp_min(0) / q.shape[1]).sqrt().cpu().numpy()
