"""Parsing user colours: #RRGGBB, RRGGBB, #RGB, or a common (CSS) colour name.

Three hex digits need the # (a bare "bad" or "fed" would be ambiguous with words)."""

from __future__ import annotations

import re

from PIL import ImageColor

from .errors import ColorError

_HEX = re.compile(r"#([0-9a-fA-F]{3})|#?([0-9a-fA-F]{6})")
ACCEPTED = "#RRGGBB, RRGGBB, #RGB or a colour name such as red, gold, hotpink"


def parse_color(text: str) -> tuple[int, int, int]:
    value = text.strip()
    if m := _HEX.fullmatch(value):
        digits = m.group(1) or m.group(2)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    if value and not value.startswith("#") and value.replace(" ", "").isalpha():
        try:
            return ImageColor.getrgb(value.replace(" ", "").lower())[:3]  # type: ignore[return-value]
        except ValueError:
            pass
    raise ColorError(f"{text!r} is not a colour I understand; use {ACCEPTED}")


def to_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)
