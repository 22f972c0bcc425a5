"""Retrieval metrics as plain functions on similarity matrices.

A query's rank is the 1-based position of its first relevant item when the gallery is
sorted by decreasing similarity, ties broken by a stable sort on gallery index (the
lower index comes first). An item is relevant when its key equals the query's key:
caption ids for caption-level retrieval (identical sentences count as hits), pair
indices for index-exact retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def first_hit_ranks(
    sim: torch.Tensor, query_keys: torch.Tensor, gallery_keys: torch.Tensor
) -> torch.Tensor:
    """1-based rank of the first relevant gallery item for each query row of `sim` (q, g).

    Every query must have at least one relevant item.
    """
    relevant = query_keys[:, None] == gallery_keys[None, :]
    if not bool(relevant.any(dim=1).all()):
        raise ValueError("a query has no relevant gallery item")
    best = sim.masked_fill(~relevant, float("-inf")).max(dim=1, keepdim=True).values
    tied = sim == best
    # among the relevant items at the best score, the lowest index comes first
    first = (relevant & tied).int().argmax(dim=1, keepdim=True)
    before = torch.arange(sim.shape[1], device=sim.device)[None, :] < first
    return (sim > best).sum(dim=1) + (tied & before).sum(dim=1) + 1


def chunked_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    query_keys: torch.Tensor,
    gallery_keys: torch.Tensor,
    chunk: int = 1024,
) -> torch.Tensor:
    """`first_hit_ranks` of `queries @ gallery.T`, computed `chunk` query rows at a time."""
    return torch.cat(
        [
            first_hit_ranks(
                queries[i : i + chunk] @ gallery.T, query_keys[i : i + chunk], gallery_keys
            )
            for i in range(0, len(queries), chunk)
        ]
    )


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


def similarity_histograms(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_ids: torch.Tensor,
    bins: int = 50,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin edges, matched density, unmatched density) of cosine similarities in [-1, 1].

    Matched: image i with its own caption i. Unmatched: pairs whose caption texts differ
    (pairs with the same sentence but another image are neither).
    """
    edges = torch.linspace(-1.0, 1.0, bins + 1)
    matched = torch.zeros(bins, dtype=torch.float64)
    unmatched = torch.zeros(bins, dtype=torch.float64)
    for i, sim in similarity_chunks(image_embeds, text_embeds, chunk):
        rows = torch.arange(i, i + len(sim))
        idx = torch.bucketize(sim.clamp(-1, 1).float(), edges[1:-1], right=True)
        matched += torch.bincount(idx[torch.arange(len(sim)), rows], minlength=bins)
        different = caption_ids[rows][:, None] != caption_ids[None, :]
        unmatched += torch.bincount(idx[different], minlength=bins)
    width = 2.0 / bins
    density = [(h / max(h.sum().item(), 1) / width).numpy() for h in (matched, unmatched)]
    return edges.numpy(), density[0], density[1]


def similarity_means(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    caption_ids: torch.Tensor,
    chunk: int = 1024,
) -> dict[str, float]:
    """Mean cosine similarity of matched pairs (image i, caption i) and of unmatched ones
    (pairs whose caption texts differ), as `similarity_histograms` counts them."""
    matched, unmatched, n_unmatched = 0.0, 0.0, 0
    for i, sim in similarity_chunks(image_embeds, text_embeds, chunk):
        rows = torch.arange(i, i + len(sim))
        matched += float(sim[torch.arange(len(sim)), rows].double().sum())
        different = caption_ids[rows][:, None] != caption_ids[None, :]
        unmatched += float(sim[different].double().sum())
        n_unmatched += int(different.sum())
    return {
        "matched_mean": matched / len(image_embeds),
        "unmatched_mean": unmatched / n_unmatched if n_unmatched else float("nan"),
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
