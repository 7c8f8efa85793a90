"""The conformance checker's greedy-token rule: exact, or a first difference at a near tie."""

import types

import pytest
from anyware_conformance.checks import Checker


def checker():
    item = types.SimpleNamespace(user_properties=[], nodeid="t", name="t")
    meta = types.SimpleNamespace(waivers=[])
    return Checker(item, types.SimpleNamespace(conformance_metadata=lambda: meta))


TOP = [[(5, -0.1), (6, -2.0)], [(7, -0.70), (8, -0.72), (9, -3.0)], [(1, -0.2)]]


def test_identical_tokens_compare_fully():
    assert checker().greedy_tokens("r", [5, 7, 1], [5, 7, 1], TOP, dtype="bfloat16") == 3


def test_first_difference_at_a_near_tie_is_allowed_and_ends_the_comparison():
    c = checker()
    assert c.greedy_tokens("r", [5, 8, 4], [5, 7, 1], TOP, dtype="bfloat16") == 1
    assert '"near_tie_at": 1' in c.item.user_properties[-1][1]


def test_difference_beyond_the_tolerance_or_outside_the_top_fails():
    with pytest.raises(pytest.fail.Exception, match="gap"):
        checker().greedy_tokens("r", [5, 9, 1], [5, 7, 1], TOP, dtype="bfloat16")
    with pytest.raises(pytest.fail.Exception, match="not among"):
        checker().greedy_tokens("r", [6, 7, 1], [5, 7, 1], [[(5, -0.1)], *TOP[1:]],
                                dtype="bfloat16")
    with pytest.raises(pytest.fail.Exception):  # fp32 tolerance is 1e-3: 0.02 is too far
        checker().greedy_tokens("r", [5, 8, 1], [5, 7, 1], TOP, dtype="float32")
