"""How every page, report and caption states a ratio of two engines' times: first / second, below 1 = first faster.

One direction everywhere (tuned / LiteRT, tuned / default), and always said in words beside the number,
so "0.91" can never be read the wrong way round.
"""

from __future__ import annotations

import math

DIRECTION = "first engine's time over the second's: below 1, the first is faster"


def in_words(ratio: float, first: str, second: str) -> str:
    """`tuned takes 0.91x LiteRT's time: 9 % faster`; "" for a ratio that was not measured (NaN)."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return ""
    head = f"{first} takes {ratio:.2f}x {second}'s time"
    change = round(abs(1 - ratio) * 100)
    if change == 0:
        return f"{head}: as fast"
    if ratio < 1:
        # Far below 1 a percentage hides the size of the gap (98 % and 99 % are 50x and 100x).
        factor = f" ({second} takes {1 / ratio:.1f}x as long)" if ratio <= 0.5 else ""
        return f"{head}: {change} % faster{factor}"
    return f"{head}: {change} % slower" if ratio < 2 else f"{first} takes {ratio:.1f}x {second}'s time: slower"
