"""Measuring several things in alternating rounds instead of one after the other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["alternating_rounds"]

T = TypeVar("T")


def alternating_rounds(items: Sequence[T], count: int) -> list[list[T]]:
    """``count`` rounds over ``items``, every second one in reverse order.

    The bench VM's cores change speed by up to ~2x for seconds to minutes at a time (see
    :mod:`.speed`). Measured one after the other, each item gets whichever phase it happens
    to meet; measured in rounds, every item's total is spread over the same stretch of the
    machine's time. Forward then back, a steady drift lands on every item alike: each one's
    mean position over two rounds is the same.
    """
    if count < 1:
        raise ValueError(f"rounds must be at least 1, not {count}")
    forward = list(items)
    return [forward if index % 2 == 0 else forward[::-1] for index in range(count)]
