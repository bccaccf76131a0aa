"""Cheap simulators for campaign tests (imported by path from specs: ``campaign_sims:...``)."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path


def smooth2d(x1: float, x2: float) -> float:
    """A smooth 2-D function on [0, 1]^2, easy for a GP."""
    return math.sin(3.0 * x1) + math.cos(2.0 * x2) + 0.5 * x1 * x2


def smooth2d_np(X):  # type: ignore[no-untyped-def]
    """``n x 2`` array version of :func:`smooth2d`."""
    import numpy as np

    return np.sin(3.0 * X[:, 0]) + np.cos(2.0 * X[:, 1]) + 0.5 * X[:, 0] * X[:, 1]


def logged(x1: float, x2: float) -> dict[str, float]:
    """:func:`smooth2d`, plus one JSON line per call in ``$EMUCAMP_TEST_LOG`` (pid, API URL)."""
    path = os.environ.get("EMUCAMP_TEST_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "x1": x1,
                        "x2": x2,
                        "pid": os.getpid(),
                        "api": os.environ.get("PREFECT_API_URL", ""),
                    }
                )
                + "\n"
            )
    delay = float(os.environ.get("EMUCAMP_TEST_DELAY", "0"))
    if delay:
        time.sleep(delay)
    return {"y": smooth2d(x1, x2), "y2": x1 - x2}


def smooth4d(x1: float, x2: float, x3: float, x4: float) -> float:
    """A smooth function of four inputs that returns at once."""
    return math.sin(3.0 * x1) + x2**2 - 0.5 * x3 + math.cos(2.0 * x4)


def staggered(x1: float, x2: float) -> float:
    """:func:`smooth2d` after ``0.4 * x1`` seconds: runs end one by one, in input order."""
    time.sleep(0.4 * x1)
    return smooth2d(x1, x2)


def slow_corner_bump(x1: float, x2: float) -> float:
    """:func:`smooth2d` plus a narrow bump at (1, 1) that takes 3 s to simulate near it.

    The quick runs elsewhere can meet an uncertainty target before the corner's slow result
    shows that the function is not as smooth as they said.
    """
    d2 = (1.0 - x1) ** 2 + (1.0 - x2) ** 2
    if d2 < 0.15**2:
        time.sleep(3.0)
    return smooth2d(x1, x2) + 3.0 * math.exp(-d2 / 0.01)


def fails_on_right(x1: float, x2: float) -> float:
    """:func:`smooth2d`, but the 'solver' diverges for ``x1 > 0.75``."""
    if x1 > 0.75:
        raise FloatingPointError(f"solver diverged at x1={x1:.3f}")
    return smooth2d(x1, x2)


def always_fails(x1: float, x2: float) -> float:
    """A broken simulator."""
    raise RuntimeError("mesh generation failed")


def hangs(x1: float, x2: float) -> float:
    """Write this process's id where EMUCAMP_TEST_LOG says, then hang."""
    Path(os.environ["EMUCAMP_TEST_LOG"]).write_text(str(os.getpid()))
    time.sleep(600)
    return 0.0


def crashes_interpreter(x1: float, x2: float) -> float:
    """Die the way a segfaulting extension does."""
    os.kill(os.getpid(), signal.SIGSEGV)
    return 0.0


def with_extras(x1: float, x2: float) -> dict[str, float]:
    """The declared output plus two the campaign did not ask for."""
    return {"y": smooth2d(x1, x2), "iterations": 7.0, "residual": abs(x1 - x2) * 1e-6}


def kills_its_worker_once(x1: float, x2: float) -> dict[str, float]:
    """:func:`logged`, except that the first call of the campaign SIGKILLs its own process.

    ``$EMUCAMP_TEST_KILL`` names a marker file: created (atomically) by the one call that
    kills its worker, so every later call, including the rerun of that input, succeeds.
    """
    marker = os.environ["EMUCAMP_TEST_KILL"]
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return logged(x1, x2)
    os.write(fd, json.dumps({"pid": os.getpid(), "x1": x1, "x2": x2}).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def kills_its_worker_on_third_call(x1: float, x2: float) -> dict[str, float]:
    """:func:`logged`, except that the campaign's third call SIGKILLs its own process.

    Calls are counted in ``$EMUCAMP_TEST_LOG``. The fatal call runs 1.5 s first, as a
    simulation that ran a while would: longer than a worker holds quick records back
    (``DaskReporter``'s 1 s), so the worker's earlier records are sent meanwhile;
    ``$EMUCAMP_TEST_KILL`` names a marker file so that only one call ever kills.
    """
    out = logged(x1, x2)
    calls = Path(os.environ["EMUCAMP_TEST_LOG"]).read_text().count("\n")
    if calls == 3:
        try:
            os.close(os.open(os.environ["EMUCAMP_TEST_KILL"], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return out
        time.sleep(1.5)
        os.kill(os.getpid(), signal.SIGKILL)
    return out


def sleeps_x1(x1: float, x2: float) -> float:
    """:func:`smooth2d`, after sleeping ``x1`` seconds."""
    time.sleep(x1)
    return smooth2d(x1, x2)


def physics(x1: float, x2: float) -> float:
    """A "simulator" whose bulk is known physics (:func:`physics_prior`) plus a small residual."""
    return 5.0 * math.sin(6.0 * x1) + math.exp(2.0 * x2) + 0.3 * x1 * x2


def physics_prior(x1, x2):  # type: ignore[no-untyped-def]
    """The known part of :func:`physics`, vectorised: n-arrays in, n values out."""
    import numpy as np

    return 5.0 * np.sin(6.0 * x1) + np.exp(2.0 * x2)


def decades(x1: float, x2: float) -> float:
    """Positive, spanning four decades over the square."""
    return math.exp(9.0 * x1) * (1.0 + x2)


def profile_np(x1, x2, t):  # type: ignore[no-untyped-def]
    """A 1-D field over ``t`` whose shape and size change with the inputs (closed form)."""
    import numpy as np

    return x1 * t + np.sin(np.pi * t) * x2**2 + 0.5 * np.exp(-t / (0.2 + 0.3 * x1))


def profile(x1: float, x2: float) -> dict[str, object]:
    """A field output ``curve`` (50 values over t in [0, 1]) and a scalar ``area`` under it."""
    import numpy as np

    t = np.linspace(0.0, 1.0, 50)
    curve = profile_np(x1, x2, t)
    return {"curve": curve, "area": float(np.trapezoid(curve, t))}


def short_profile(x1: float, x2: float) -> dict[str, object]:
    """Like :func:`profile`, but the curve comes back 10 values short."""
    out = profile(x1, x2)
    out["curve"] = out["curve"][:40]  # type: ignore[index]
    return out
