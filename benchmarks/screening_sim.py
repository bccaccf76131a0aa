"""Hartmann-6 with a simulation's cost: sleeps ``EMUCAMP_BENCH_T`` seconds (0.1) first."""

from __future__ import annotations

import os
import time

from emucamp.testfunctions import hartmann6


def slow_hartmann6(x1: float, x2: float, x3: float, x4: float, x5: float, x6: float) -> float:
    """:func:`emucamp.testfunctions.hartmann6` after a pause."""
    time.sleep(float(os.environ.get("EMUCAMP_BENCH_T", "0.1")))
    return hartmann6(x1, x2, x3, x4, x5, x6)
