"""Retrieval metrics on hand-built similarity matrices with known answers (duplicates, ties)."""

import numpy as np
import pytest
import torch

from fashion.core.ranks import chunked_ranks, first_hit_ranks
from fashion.metrics.retrieval import recall_summary, similarity_histograms


def ranks(sim, query_keys, gallery_keys):
    return first_hit_ranks(
        torch.tensor(sim, dtype=torch.float32), torch.tensor(query_keys), torch.tensor(gallery_keys)
    ).tolist()


def test_diagonal_hits_rank_first():
    assert ranks(np.eye(3), [0, 1, 2], [0, 1, 2]) == [1, 1, 1]


def test_rank_counts_better_scored_items():
    sim = [[0.1, 0.9, 0.5], [0.3, 0.2, 0.4], [0.0, 0.0, -0.5]]
    assert ranks(sim, [2, 2, 2], [0, 1, 2]) == [2, 1, 3]


def test_duplicate_captions_count_at_caption_level_but_not_exact():
    # images 0 and 1 share a caption (key 7); image 2 has another one (key 3)
    sim = [[0.2, 0.8, 0.9], [0.7, 0.1, 0.0], [0.6, 0.5, 0.4]]
    caption_keys = [7, 7, 3]
    assert ranks(sim, caption_keys, caption_keys) == [2, 1, 3]
    assert ranks(sim, [0, 1, 2], [0, 1, 2]) == [3, 2, 3]


def test_ties_broken_by_gallery_index():
    sim = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    assert ranks(sim, [0, 1, 2], [0, 1, 2]) == [1, 2, 3]
    # the lowest-index relevant item among the best-scored ones is the first hit
    assert ranks([[0.5, 0.9, 0.9, 0.9]], [1], [0, 2, 1, 1]) == [2]


def test_matches_a_stable_sort_reference():
    rng = np.random.default_rng(0)
    sim = rng.integers(0, 4, (40, 30)).astype(np.float32)  # many ties
    q_keys, g_keys = rng.integers(0, 5, 40), rng.integers(0, 5, 30)
    g_keys[:5] = np.arange(5)  # every query has a relevant item
    expected = []
    for row, key in zip(sim, q_keys, strict=True):
        order = np.argsort(-row, kind="stable")
        expected.append(int(np.flatnonzero(g_keys[order] == key)[0]) + 1)
    assert ranks(sim, q_keys, g_keys) == expected


def test_chunked_equals_whole():
    rng = np.random.default_rng(1)
    q, g = torch.tensor(rng.normal(size=(10, 4))), torch.tensor(rng.normal(size=(10, 4)))
    keys = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 5, 6])
    whole = first_hit_ranks(q @ g.T, keys, keys)
    assert torch.equal(chunked_ranks(q, g, keys, keys, chunk=3), whole)


def test_query_without_relevant_item_is_an_error():
    with pytest.raises(ValueError, match="no relevant"):
        ranks([[0.1, 0.2]], [5], [0, 1])


def test_recall_summary():
    summary = recall_summary(torch.tensor([1, 2, 6, 11]))
    assert summary == {"r1": 0.25, "r5": 0.5, "r10": 0.75, "mean_rank": 5.0, "median_rank": 4.0}


def test_similarity_histograms_split_matched_and_unmatched():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    caption_ids = torch.tensor([0, 1, 1])  # texts 1 and 2 are the same sentence
    edges, matched, unmatched = similarity_histograms(images, texts, caption_ids, bins=4, chunk=2)
    width = 0.5
    assert edges.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    # matched: sims 1, 1, 0 -> bins [0, 0, 1, 2]
    assert np.allclose(matched * width * 3, [0, 0, 1, 2])
    # unmatched (different caption): (0,1)=0, (0,2)=-1, (1,0)=0, (2,0)=0 -> bins [1, 0, 3, 0]
    assert np.allclose(unmatched * width * 4, [1, 0, 3, 0])
