"""Whole numbers read from text a person or a client sent (a query parameter), bounded before they are parsed."""

from __future__ import annotations


def whole_number(text: str, *, low: int, high: int, of: str = "") -> int:
    """``text`` as a whole number from ``low`` to ``high`` (ASCII digits only: no sign, space or underscore), else
    ValueError with a message naming the range, such as "Ask for a whole number of runs from 1 to 500." (``of``:
    "runs"). The caller decides what an empty or absent value means.

    The digits are counted before ``int()`` reads them: Python refuses to convert more than 4,300 digits with a
    ValueError of its own, and converting fewer still takes time quadratic in their number."""
    digits = text.lstrip("0") if text.isascii() and text.isdecimal() else None
    # More significant digits than ``high`` has is out of range whatever they are; leading zeros do not count.
    if digits is not None and len(digits) <= len(str(high)):
        value = int(digits or "0")
        if low <= value <= high:
            return value
    raise ValueError(f"Ask for a whole number{f' of {of}' if of else ''} from {low} to {high}.")
