"""A simulator whose run time is lognormal around a mean: sleeps, then returns a smooth value.

The duration is drawn from a generator seeded by the inputs, so a rerun of the same input
takes as long. ``EMUCAMP_BENCH_T`` sets the mean duration in seconds.
"""

from __future__ import annotations

import hashlib
import math
import os
import time

import numpy as np


def sleepy(x1: float, x2: float, x3: float) -> float:
    """Sleep ~T seconds (lognormal, sigma 0.5), return a smooth 3-D function."""
    mean = float(os.environ.get("EMUCAMP_BENCH_T", "0.2"))
    seed = int.from_bytes(hashlib.blake2b(repr((x1, x2, x3)).encode(), digest_size=8).digest())
    sigma = 0.5
    # lognormal with the requested mean: mu = log(mean) - sigma^2 / 2
    duration = float(np.random.default_rng(seed).lognormal(math.log(mean) - sigma**2 / 2, sigma))
    time.sleep(duration)
    return math.sin(3 * x1) + math.cos(2 * x2) * x3 + 0.3 * x1 * x2
