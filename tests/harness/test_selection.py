"""Depth windows and per-window node selection (METHOD, targeted rollouts steps 1-2)."""
import math

import torch

from harness.selection import depth_window, entropy_rows, select_nodes, tv_rows


def test_windows_grow_exponentially():
    assert [depth_window(i) for i in range(9)] == [0, 1, 2, 2, 3, 3, 3, 3, 4]
    assert depth_window(1023) == 10 and depth_window(1024) == 11


def test_select_top_b_per_window_by_priority():
    priority = [0.1, 0.5, 0.2, 0.9, 0.3, 0.8, 0.1, 0.7, 5.0]
    chosen = select_nodes(priority, per_window=2)
    # windows: {0}, {1}, {2,3}, {4..7}, {8}
    assert chosen == [(0, 0), (1, 1), (2, 2), (3, 2), (5, 3), (7, 3), (8, 4)]
    assert select_nodes(priority, per_window=1) == [(0, 0), (1, 1), (3, 2), (5, 3), (8, 4)]


def test_ties_go_to_the_earlier_position_and_nan_is_never_chosen():
    assert select_nodes([1.0, 1.0, 1.0, 1.0], per_window=1) == [(0, 0), (1, 1), (2, 2)]
    assert select_nodes([math.nan, 1.0, math.nan, 0.5], per_window=1) == [(1, 1), (3, 2)]


def test_entropy_and_tv_rows():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, -10.0, -10.0, -10.0]])
    ent = entropy_rows(logits)
    assert abs(float(ent[0]) - math.log(4)) < 1e-6 and float(ent[1]) < 1e-3
    tv = tv_rows(logits, logits.flip(0))
    assert torch.allclose(tv, torch.full((2,), float(tv[0]))) and 0.7 < float(tv[0]) <= 0.75
