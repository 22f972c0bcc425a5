"""Ranks in retrieval: the arithmetic of a query's first relevant gallery item.

A query's rank is the 1-based position of its first relevant item when the gallery is
sorted by decreasing similarity, ties broken by a stable sort on gallery index (the
lower index comes first). An item is relevant when its key equals the query's key:
caption ids for caption-level retrieval (identical sentences count as hits), pair
indices for index-exact retrieval.

Plain tensor arithmetic, below both users: CLIP's validation R@1 (`fashion.clip.training`)
and the retrieval metrics (`fashion.metrics.retrieval`), so `clip` need not import `metrics`.
"""

from __future__ import annotations

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
