"""The evaluation figures of mixed tables and text runs, on hand-made numbers."""

import math

import pytest
import torch

from flowmatch.evaluation.tables import table_distances
from flowmatch.evaluation.text import tokens_per_item


def test_table_distances_on_hand_made_rows():
    # Rows: one continuous column, then two categorical columns (codes as floats).
    a = torch.tensor([[0.0, 0, 1], [1.0, 1, 1], [2.0, 2, 0], [3.0, 0, 0]])
    same = table_distances(a, a.clone(), 1, [3, 2])
    assert same == (0.0, 0.0)
    b = a.clone()
    b[:, 0] += 0.5  # every point moved by 0.5: W2 = 0.5 exactly
    b[:, 1] = torch.tensor([0.0, 0, 0, 0])  # column 1: (1/2, 1/4, 1/4) vs (1, 0, 0): TV 1/2
    w2, tv = table_distances(a, b, 1, [3, 2])
    assert w2 == pytest.approx(0.5, abs=1e-9)
    assert tv == pytest.approx((0.5 + 0.0) / 2, abs=1e-12)  # mean over the two columns


def test_table_distances_without_continuous_columns_is_nan_w2():
    a = torch.tensor([[0.0], [1.0]])
    w2, tv = table_distances(a, torch.tensor([[1.0], [1.0]]), 0, [2])
    assert math.isnan(w2) and tv == pytest.approx(0.5)


def test_tokens_per_item_counts_the_end_token():
    tokens = torch.tensor([[3, 1, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0]])
    assert tokens_per_item(tokens, 0).tolist() == [3, 4, 1]
    assert tokens_per_item(tokens, None).tolist() == [4, 4, 4]  # no vocabulary: whole rows
