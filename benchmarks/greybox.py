"""Grey box against black box on the battery example: simulations needed for a held-out error.

Runs the battery example's own specs (``examples/battery/campaign.toml``, the black box, and
``campaign_greybox.toml``, the grey box with the physics prior
``battery:ocv_minus_overpotentials``) through the engine-free campaign loop
(:class:`~emucamp.campaign.Campaign` on a 2-thread :class:`~emucamp.executors.PoolExecutor`,
the spec's max-variance strategy, the same seed and so the same initial Sobol design for
both), with the stop rules replaced by a fixed budget. After every retraining the emulator
predicts a fixed set of held-out DFN voltages (uniform random inputs over the box, simulated
once at the start); the tables give, per arm over the seeds, the simulations needed to reach
a held-out RMSE and stay there, the RMSE at a few sample sizes, and the ratio grey / black.
The arm ``grey-ohmic`` is the grey box with the first, simplest prior
(``battery:ocv_minus_ohmic``, OCV - I R_eff).

    python benchmarks/greybox.py [--seeds 5] [--budget 150] [--heldout 300]
        [--arms black,grey,grey-ohmic] [--no-as-written] [--cache /tmp/battery-heldout.npz]

``--as-written`` (the default) then also runs both specs unchanged, to see where their
``target_std`` rule stops each.

Needs PyBaMM (``pip install "emucamp[battery]"``). The campaigns are asynchronous (two
simulations run while the GP retrains), so a rerun differs somewhat, the <= 10 mV counts most
(the grey prior alone is at ~9 mV there).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emucamp.campaign import Campaign, CampaignObserver
from emucamp.executors import PoolExecutor
from emucamp.spec import CampaignSpec, load_spec
from emucamp.storage import StepRecord

BATTERY = Path(__file__).resolve().parents[1] / "examples" / "battery"
sys.path.insert(0, str(BATTERY))
import battery  # noqa: E402

ARMS: dict[str, tuple[str, str | None]] = {
    # name: (spec file, prior_mean override)
    "black": ("campaign.toml", None),
    "grey": ("campaign_greybox.toml", None),
    "grey-ohmic": ("campaign_greybox.toml", "battery:ocv_minus_ohmic"),
}
SIZES = (10, 20, 40, 80)


# -- the held-out set ---------------------------------------------------------------------
def _voltage(row: np.ndarray) -> float:
    return float(battery.discharge(*map(float, row))["voltage"])


def heldout(
    n: int, seed: int = 2024, workers: int = 2, cache: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform random inputs over the box and their DFN voltages (cached if asked)."""
    if cache is not None and cache.exists():
        data = np.load(cache)
        if len(data["X"]) == n and int(data["seed"]) == seed:
            return data["X"], data["V"]
    lo, hi = np.array(list(battery.BOUNDS.values())).T
    X = lo + (hi - lo) * np.random.default_rng(seed).random((n, len(lo)))
    with cf.ThreadPoolExecutor(workers) as pool:  # one DFN per thread (battery.py)
        V = np.array(list(pool.map(_voltage, X)))
    if cache is not None:
        np.savez(cache, X=X, V=V, seed=seed)
    return X, V


# -- one campaign -------------------------------------------------------------------------
@dataclass
class Curve:
    """Held-out RMSE (mV) and 95 % interval coverage after each retraining."""

    n: list[int] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def at(self, n: int) -> tuple[float, float]:
        """RMSE and coverage of the latest model trained on at most ``n`` simulations."""
        k = max((i for i, m in enumerate(self.n) if m <= n), default=None)
        return (np.nan, np.nan) if k is None else (self.rmse[k], self.coverage[k])

    def needs(self, target: float) -> int | None:
        """Fewest simulations from which every later retraining has RMSE <= ``target``."""
        need = None
        for m, r in zip(self.n, self.rmse, strict=True):
            if r > target:
                need = None
            elif need is None:
                need = m
        return need


class Scorer(CampaignObserver):
    def __init__(self, X: np.ndarray, V: np.ndarray) -> None:
        self.X, self.V, self.curve = X, V, Curve()

    def on_step(self, step: StepRecord, campaign: Campaign) -> None:
        assert campaign.emulator is not None
        mean, std = campaign.emulator.predict(self.X)
        err = mean[:, 0] - self.V
        self.curve.n.append(step.n)
        self.curve.rmse.append(1e3 * float(np.sqrt(np.mean(err**2))))
        self.curve.coverage.append(float(np.mean(np.abs(err) <= 1.96 * std[:, 0])))


def arm_spec(arm: str, seed: int, budget: int, store: Path) -> CampaignSpec:
    path, prior = ARMS[arm]
    data: dict[str, Any] = load_spec(BATTERY / path).to_json_dict()
    data["campaign"].update(name=f"battery-{arm}", store=str(store), seed=seed)
    data["stop"].update(max_simulations=budget, target_std=None)
    data["execution"]["workers"] = 2
    if prior is not None:
        data["emulator"]["prior_mean"] = prior
    return CampaignSpec.model_validate(data).with_base_dir(BATTERY)


def run(spec: CampaignSpec, X: np.ndarray, V: np.ndarray) -> tuple[Curve, str]:
    """Run one campaign, scoring every retraining; the curve and the stop rule that fired."""
    scorer = Scorer(X, V)
    start = time.perf_counter()
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, 2) as executor:
        outcome = campaign.run(executor, scorer)
    scorer.curve.seconds = time.perf_counter() - start
    return scorer.curve, outcome.rule


def as_written(seeds: int, folder: Path, X: np.ndarray, V: np.ndarray) -> None:
    """The two example specs unchanged (target_std and max_simulations), seeds 0..seeds-1."""
    print(
        "\nThe example specs as written (stop: max posterior std <= 0.02 x output std, or "
        "60 simulations): simulations when stopped, held-out RMSE and coverage then\n"
    )
    print("| seed | black: n | RMSE mV | coverage | grey: n | RMSE mV | coverage |")
    print("|---|---|---|---|---|---|---|")
    for seed in range(seeds):
        cells = [str(seed)]
        for arm in ("black", "grey"):
            spec = load_spec(BATTERY / ARMS[arm][0])
            data = spec.to_json_dict()
            data["campaign"].update(store=str(folder / f"spec-{arm}-{seed}.zarr"), seed=seed)
            curve, rule = run(CampaignSpec.model_validate(data).with_base_dir(BATTERY), X, V)
            stop = "" if rule == "target_std" else f" ({rule})"
            cells += [f"{curve.n[-1]}{stop}", f"{curve.rmse[-1]:.1f}", f"{curve.coverage[-1]:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


# -- the tables ---------------------------------------------------------------------------
def _spread(values: Sequence[float | None], fmt: str = "{:.1f}", budget: int | None = None) -> str:
    if budget is not None:  # counts: None means "not within the budget"
        shown = [budget + 1 if v is None else v for v in values]
        text = [f">{budget}" if v is None else str(v) for v in values]
        lo, hi = text[int(np.argmin(shown))], text[int(np.argmax(shown))]
        med = float(np.median(shown))
        m = f">{budget}" if med > budget else f"{med:g}"
        return f"{m} ({lo}-{hi})"
    a = np.asarray(values, dtype=float)
    return f"{fmt.format(np.median(a))} ({fmt.format(a.min())}-{fmt.format(a.max())})"


def _ratio(a: float, b: float) -> str:
    return "-" if not (np.isfinite(a) and np.isfinite(b)) or b == 0 else f"{a / b:.2f}"


def report(
    curves: dict[str, list[Curve]], targets: list[float], budget: int, alone: dict[str, float]
) -> None:
    """Print the tables; ``alone``: held-out RMSE (mV) of each grey arm's prior by itself."""
    arms = list(curves)
    grey = [a for a in arms if a != "black"]
    print(f"\nSimulations to reach a held-out RMSE and stay there, median (range) over "
          f"{len(curves[arms[0]])} seeds; >{budget}: not within the budget\n")  # fmt: skip
    head = ["RMSE target"] + arms + [f"{g} / black" for g in grey if "black" in arms]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for target in targets:
        needs = {a: [c.needs(target) for c in curves[a]] for a in arms}
        cells = [f"<= {target:g} mV"] + [_spread(needs[a], budget=budget) for a in arms]
        med = {a: float(np.median([budget + 1 if v is None else v for v in needs[a]]))
               for a in arms}  # fmt: skip
        for g in grey if "black" in arms else []:
            if med[g] > budget:
                cells.append("-")
            elif med["black"] > budget:  # black did not get there: an upper bound
                cells.append(f"< {_ratio(med[g], budget)}")
            else:
                cells.append(_ratio(med[g], med["black"]))
        print("| " + " | ".join(cells) + " |")

    print("\nHeld-out RMSE in mV at n simulations (latest retraining on <= n), median (range)\n")
    print("| n | " + " | ".join(head[1:]) + " |\n|" + "---|" * len(head))
    cells = ["0 (prior alone)"] + [f"{alone[a]:.1f}" if a in alone else "-" for a in arms]
    print("| " + " | ".join(cells + ["-"] * (len(head) - len(cells))) + " |")
    sizes = [n for n in SIZES if n < budget] + [budget]
    for n in sizes:
        rmse = {a: [c.at(n)[0] for c in curves[a]] for a in arms}
        cells = [str(n)] + [_spread(rmse[a]) for a in arms]
        for g in grey if "black" in arms else []:
            cells.append(_ratio(float(np.median(rmse[g])), float(np.median(rmse["black"]))))
        print("| " + " | ".join(cells) + " |")

    print("\nCoverage of the 95 % intervals on the held-out set, mean over seeds\n")
    print("| n | " + " | ".join(arms) + " |\n|" + "---|" * (len(arms) + 1))
    for n in sizes:
        cov = [np.mean([c.at(n)[1] for c in curves[a]]) for a in arms]
        print(f"| {n} | " + " | ".join(f"{v:.2f}" for v in cov) + " |")
    secs = " | ".join(f"{a} {np.mean([c.seconds for c in curves[a]]):.0f} s" for a in arms)
    print(f"\nMean wall time per campaign: {secs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="campaign seeds 0..seeds-1")
    parser.add_argument("--budget", type=int, default=150, help="simulations per campaign")
    parser.add_argument("--heldout", type=int, default=300, help="held-out DFN points")
    parser.add_argument("--arms", default="black,grey,grey-ohmic", help=f"of {list(ARMS)}")
    parser.add_argument("--targets", default="10,5,2.5", help="RMSE targets in mV")
    parser.add_argument(
        "--as-written",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run both example specs unchanged (their target_std stop)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="npz for the held-out set")
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    logging.getLogger("emucamp").setLevel(logging.ERROR)

    start = time.perf_counter()
    X, V = heldout(args.heldout, cache=args.cache)
    print(f"held-out set: {len(X)} DFN runs, voltage std {1e3 * V.std():.0f} mV "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    alone = {}
    for arm in arms:
        spec = arm_spec(arm, 0, args.budget, Path("unused.zarr"))
        name = spec.emulator.prior_mean
        if name is None:
            continue
        res = V - getattr(battery, name.split(":")[1])(*X.T)
        alone[arm] = 1e3 * float(np.sqrt(np.mean(res**2)))
        print(f"prior {name} alone: held-out RMSE {1e3 * np.sqrt(np.mean(res**2)):.1f} mV, "
              f"residual std {1e3 * res.std(ddof=1):.1f} mV")  # fmt: skip

    curves: dict[str, list[Curve]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for arm in arms:
                spec = arm_spec(arm, seed, args.budget, Path(tmp) / f"{arm}-{seed}.zarr")
                curve, _ = run(spec, X, V)
                curves[arm].append(curve)
                print(f"seed {seed} {arm:>10}: RMSE {curve.rmse[-1]:.1f} mV at n = "
                      f"{curve.n[-1]}, {curve.seconds:.0f} s", flush=True)  # fmt: skip
        targets = [float(t) for t in args.targets.split(",")]
        report(curves, targets, args.budget, alone)
        if args.as_written:
            as_written(args.seeds, Path(tmp), X, V)
    print(f"\nTotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
