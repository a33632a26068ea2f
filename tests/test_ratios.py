"""A ratio of two engines' times is said one way everywhere: first / second, below 1 = first faster."""

from __future__ import annotations

import math

import pytest

from runtime.ratios import in_words


@pytest.mark.parametrize(("ratio", "words"), [
    (0.91, "tuned takes 0.91x LiteRT's time: 9 % faster"),
    (1.12, "tuned takes 1.12x LiteRT's time: 12 % slower"),
    (1.001, "tuned takes 1.00x LiteRT's time: as fast"),
    (0.25, "tuned takes 0.25x LiteRT's time: 75 % faster (LiteRT takes 4.0x as long)"),
    (3.0, "tuned takes 3.0x LiteRT's time: slower"),
])
def test_in_words(ratio, words):
    assert in_words(ratio, "tuned", "LiteRT") == words


def test_a_ratio_not_measured_has_no_words():
    assert in_words(math.nan, "tuned", "LiteRT") == "" and in_words(None, "tuned", "LiteRT") == ""
