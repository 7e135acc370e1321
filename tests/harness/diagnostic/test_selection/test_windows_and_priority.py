"""Depth windows and per-window node selection (METHOD, targeted rollouts steps 1-2), and the screened
selection's decision rules (free sibling trials, keep on mixed evidence, which alternatives to screen)."""
import math

import pytest
import torch

from harness.diagnostic.selection import (
    depth_window,
    entropy_rows,
    even_window,
    screen_keeps,
    screen_tokens,
    select_nodes,
    sibling_trials,
    tv_rows,
    window_candidates,
    window_count,
    window_of,
)


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


def test_window_candidates_rank_by_priority_and_cap_each_window():
    priority = [0.1, 0.5, 0.2, 0.9, 0.3, 0.8, math.nan, 0.7, 5.0]
    assert window_candidates(priority) == {0: [0], 1: [1], 2: [3, 2], 3: [5, 7, 4], 4: [8]}
    assert window_candidates(priority, limit=2) == {0: [0], 1: [1], 2: [3, 2], 3: [5, 7], 4: [8]}


def test_sibling_rollouts_sharing_the_prefix_are_free_trials_of_their_tokens():
    responses = [(5, 6, 7), (5, 6, 8), (5, 6, 7, 1), (5, 9, 8), (5, 6)]
    outcomes = [True, False, True, False, True]
    support = [7, 8, 3]  # the node (rollout 0, position 2) sampled 7
    correct, trials = sibling_trials(responses, outcomes, rollout=0, position=2, support=support)
    # rollout 1 took 8 (failed), rollout 2 took 7 (succeeded); rollout 3 has another prefix, rollout 4 ends
    # before position 2, and the node's own rollout is not its own sibling
    assert (correct, trials) == ([1, 0, 0], [1, 1, 0])
    # a token outside the support is no trial of any support token
    assert sibling_trials(responses, outcomes, 0, 2, [7, 3]) == ([1, 0], [1, 0])
    # position 0: every rollout shares the (empty) prefix
    assert sibling_trials(responses, outcomes, 3, 0, [5]) == ([3], [4])


def test_screen_keeps_a_candidate_whose_evidence_holds_a_success_and_a_failure():
    assert screen_keeps(True, [0, 0], [0, 1])  # rollout succeeded, the screened alternative failed
    assert screen_keeps(False, [0, 1], [0, 1])  # rollout failed, the alternative succeeded
    assert not screen_keeps(True, [0, 1], [0, 1])  # all successes
    assert not screen_keeps(False, [0, 0], [2, 1])  # all failures, siblings included
    assert screen_keeps(False, [1, 0], [1, 0])  # a sibling with the sampled token succeeded
    assert not screen_keeps(True, [0, 0], [0, 0])  # no evidence beyond the rollout: nothing to compare


def test_screen_tokens_are_the_likeliest_alternatives_without_a_free_trial():
    support = [11, 12, 13, 14]  # sampled token first, then by probability
    assert screen_tokens(support, [0, 0, 0, 0]) == [12]
    assert screen_tokens(support, [5, 1, 0, 0]) == [13]  # 12 already has a sibling trial
    assert screen_tokens(support, [0, 1, 1, 1]) == []  # every alternative is covered for free
    assert screen_tokens([11], [0]) == []


def test_window_count_is_the_number_of_exponential_windows_a_rollout_spans():
    # by hand: n positions 0..n-1 span [0,1), [1,2), [2,4), ... up to the window holding n-1
    expected = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 8: 4, 9: 5, 10: 5, 150: 9, 256: 9, 257: 10, 300: 10, 512: 10,
                513: 11}
    assert {n: window_count(n) for n in expected} == expected


def test_even_windows_have_equal_width_in_depth_norm():
    # n = 10: 5 windows of 2 positions; n = 5: 4 windows, depth_norm 0, .2 | .4 | .6 | .8 in bins of width 1/4
    assert [even_window(i, 10) for i in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [even_window(i, 5) for i in range(5)] == [0, 0, 1, 2, 3]
    assert [even_window(i, 4) for i in range(4)] == [0, 0, 1, 2]  # 3 windows: bins [0, 1/3), [1/3, 2/3), [2/3, 1)
    assert [even_window(i, 3) for i in range(3)] == [0, 1, 2]
    # n = 300: 10 windows of 30 positions, window j = depth_norm in [j/10, (j+1)/10)
    assert [even_window(i, 300) for i in range(300)] == [i // 30 for i in range(300)]
    assert [window_of(i, 300, "exponential") for i in (0, 1, 2, 3, 255, 256, 299)] == [0, 1, 2, 2, 8, 9, 9]
    with pytest.raises(ValueError, match="unknown depth-window layout 'log'"):
        window_of(0, 3, "log")


def test_even_selection_by_hand():
    priority = [0.1, 0.5, 0.2, 0.9, 0.3, 0.8, 0.1, 0.7, 5.0, 0.0]
    # even, n = 10: windows {0,1} {2,3} {4,5} {6,7} {8,9}; exponential: {0} {1} {2,3} {4..7} {8,9}
    assert select_nodes(priority, 1, "even") == [(1, 0), (3, 1), (5, 2), (7, 3), (8, 4)]
    assert select_nodes(priority, 1) == select_nodes(priority, 1, "exponential") == [(0, 0), (1, 1), (3, 2), (5, 3),
                                                                                     (8, 4)]
    assert window_candidates(priority, layout="even") == {0: [1, 0], 1: [3, 2], 2: [5, 4], 3: [7, 6], 4: [8, 9]}
    # NaN positions are never candidates but still count in the rollout's length: n = 4, 3 windows {0,1} {2} {3}
    assert select_nodes([math.nan, math.nan, 1.0, 1.0], 1, "even") == [(2, 1), (3, 2)]


def test_a_300_token_chain_with_flat_priority():
    """Same node budget (10 windows, B each), spread: exponential puts 9 of its 10 nodes in the first half (4 in
    the first 8 tokens), even one every tenth of the chain."""
    flat = [1.0] * 300  # ties go to the earlier position
    exponential = [position for position, _ in select_nodes(flat, 1)]
    even = [position for position, _ in select_nodes(flat, 1, "even")]
    assert exponential == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert even == [0, 30, 60, 90, 120, 150, 180, 210, 240, 270]
    assert [position for position, _ in select_nodes(flat, 2, "even")] == sorted(
        [30 * j for j in range(10)] + [30 * j + 1 for j in range(10)])
