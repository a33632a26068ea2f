"""Checks on figures a report prints rounded."""

from __future__ import annotations


def printed_quotient_bounds(numerator: float, denominator: float, *, term_step: float = 1e-3,
                            quotient_step: float = 0.01) -> tuple[float, float]:
    """The range a quotient printed to `quotient_step` can show when both its terms were printed to `term_step`
    (a 0.066 ms term alone moves the quotient by 1 % per rounding step of 0.001 ms)."""
    term, quotient = term_step / 2, quotient_step / 2
    return ((numerator - term) / (denominator + term) - quotient,
            (numerator + term) / max(denominator - term, 1e-12) + quotient)
