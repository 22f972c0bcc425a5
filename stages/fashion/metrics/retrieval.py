"""Retrieval metrics as plain functions on similarity matrices.

A query's rank (the 1-based position of its first relevant item, ties broken by gallery
index; relevant: the same key as the query) is computed in `fashion.core.ranks`, below both
`clip` (its validation R@1) and this module, which builds the metrics on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from fashion.core.ranks import chunked_ranks


def recall_summary(ranks: torch.Tensor | np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """{"r1", "r5", "r10": fraction of queries ranked within k, "mean_rank", "median_rank"}."""
    r = np.asarray(ranks, dtype=np.float64)
    summary = {f"r{k}": float((r <= k).mean()) for k in ks}
    summary.update(mean_rank=float(r.mean()), median_rank=float(np.median(r)))
    return summary


def similarity_chunks(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, chunk: int = 1024
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, image rows x all texts similarity) blocks, for statistics over all pairs."""
    for i in range(0, len(image_embeds), chunk):
        yield i, image_embeds[i : i + chunk] @ text_embeds.T


def matched_and_unmatched(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_ids: torch.Tensor,
    chunk: int = 1024,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(matched, unmatched) cosine similarities, a chunk of images at a time. Matched: image
    i with its own caption i. Unmatched: pairs whose caption texts differ (pairs with the same
    sentence but another image are neither)."""
    for i, sim in similarity_chunks(image_embeds, text_embeds, chunk):
        rows = torch.arange(i, i + len(sim))
        different = caption_ids[rows][:, None] != caption_ids[None, :]
        yield sim[torch.arange(len(sim)), rows], sim[different]


def similarity_histograms(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_ids: torch.Tensor,
    bins: int = 50,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin edges, matched density, unmatched density) of cosine similarities in [-1, 1],
    of the pairs `matched_and_unmatched` yields."""
    edges = torch.linspace(-1.0, 1.0, bins + 1)
    counts = [torch.zeros(bins, dtype=torch.float64) for _ in range(2)]
    for pairs in matched_and_unmatched(image_embeds, text_embeds, caption_ids, chunk):
        for count, sim in zip(counts, pairs, strict=True):
            idx = torch.bucketize(sim.clamp(-1, 1).float(), edges[1:-1], right=True)
            count += torch.bincount(idx, minlength=bins)
    width = 2.0 / bins
    density = [(h / max(h.sum().item(), 1) / width).numpy() for h in counts]
    return edges.numpy(), density[0], density[1]


def similarity_means(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_ids: torch.Tensor,
    chunk: int = 1024,
) -> dict[str, float]:
    """Mean cosine similarity of the matched and of the unmatched pairs
    (`matched_and_unmatched`)."""
    sums, counts = [0.0, 0.0], [0, 0]
    for pairs in matched_and_unmatched(image_embeds, text_embeds, caption_ids, chunk):
        for k, sim in enumerate(pairs):
            sums[k] += float(sim.double().sum())
            counts[k] += sim.numel()
    return {
        "matched_mean": sums[0] / counts[0],
        "unmatched_mean": sums[1] / counts[1] if counts[1] else float("nan"),
    }


def distinct_caption_ranks(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_ids: torch.Tensor,
    chunk: int = 1024,
) -> torch.Tensor:
    """Image-to-text ranks against a gallery of distinct captions (one entry per caption text):
    a hit is the query's own caption. Unlike an index-exact gallery with repeated sentences,
    its ceiling is 1 whatever the duplicates."""
    keys, first = np.unique(caption_ids.numpy(), return_index=True)
    return chunked_ranks(
        image_embeds, text_embeds[torch.from_numpy(first)], caption_ids,
        torch.from_numpy(keys), chunk,
    )  # fmt: skip
