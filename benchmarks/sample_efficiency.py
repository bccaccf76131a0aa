"""Sample efficiency: held-out error against simulations, per strategy, against baselines.

Each active-learning run is a real engine-free campaign (``Campaign`` + ``PoolExecutor``,
2 worker threads, no Prefect) to a fixed budget. Afterwards the emulator is refitted on the
first ``n`` finished simulations, for ``n`` every ``--every`` runs, and scored on held-out
points drawn uniformly (2,000 by default): NRMSE = RMSE / std of the truth, and the coverage
of the nominal 95 % intervals. The space-filling baselines fit the same GP on a scrambled
Sobol design (nested: the first ``n`` points) or a fresh Latin hypercube of size ``n``.
``sklearn`` fits scikit-learn's ``GaussianProcessRegressor`` (Matern 5/2 ARD + white noise,
normalised outputs, 3 restarts) on the Sobol designs: what many scientists would use
(``pip install scikit-learn``; not an emucamp dependency).

    python benchmarks/sample_efficiency.py --functions branin ishigami hartmann6 borehole \
        --strategies sobol lhs max-variance integrated-variance sklearn --seeds 5 --budget 200

The simulations here are instant, standing in for expensive ones. Their campaigns set
``[design] model_lag = 0.25`` so that each model chooses at most a quarter of its n, as the
refit schedule lets it when simulations are slower than a fit (``--model-lag 0``: no cap,
and the loop's speed decides how many picks each model makes).

The "sims to" counts are refined to one simulation: below the grid's first n at or under a
target, every n back to the previous grid point is scored (``--no-refine``: the grid's n).

Prints one markdown table per function (medians over seeds, with min-max) and writes every
run's curve as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from emucamp.campaign import Campaign
from emucamp.emulators.diagnostics import loo_metrics
from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.greybox import GreyBox
from emucamp.executors import PoolExecutor
from emucamp.space import Parameter, Space
from emucamp.spec import parse_spec
from emucamp.storage import CampaignStore
from emucamp.testfunctions import DOMAINS, borehole_np, branin_np, hartmann6_np, ishigami_np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heat2d_coarse

FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "branin": branin_np,
    "ishigami": ishigami_np,
    "hartmann6": hartmann6_np,
    "borehole": borehole_np,
    "heat2d": heat2d_coarse.heat2d_np,
}
BOXES = {**DOMAINS, "heat2d": heat2d_coarse.DOMAIN}
LOG = {"heat2d": heat2d_coarse.LOG}
SIMULATORS = {name: f"emucamp.testfunctions:{name}" for name in DOMAINS}
SIMULATORS["heat2d"] = "heat2d_coarse:heat2d"
CHECKPOINTS = (25, 50, 100, 200)
PRIORS = "none"  # set by --priors
KERNEL = "rbf"  # set by --kernel
POSITIVE = False  # set by --positive: the output modelled on a log scale
MODEL_LAG: float | None = 0.25  # set by --model-lag ([design] model_lag; 0: none)
WORKERS = 4  # set by --workers ([execution] workers: simulations in flight)
TARGETS = (0.05, 0.01)
NEEDED_TARGETS = (0.05, 0.01, 0.001)  # the "sims to" columns


def space_of(name: str) -> Space:
    log = LOG.get(name, set())
    return Space([Parameter(p, lo, hi, log=p in log) for p, (lo, hi) in BOXES[name].items()])


def score(mean: np.ndarray, std: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    nrmse = float(np.sqrt(np.mean((mean - y) ** 2)) / y.std())
    coverage = float(np.mean(np.abs(mean - y) <= 1.959964 * std))
    return nrmse, coverage


Scores = tuple[float, float, float, float, float, float]


def fit_score(space: Space, X: np.ndarray, y: np.ndarray, X_test: np.ndarray,
              y_test: np.ndarray) -> Scores:  # fmt: skip
    """NRMSE, coverage, seconds, the emulator's own max and RMS relative std, LOO NRMSE.

    The relative stds are over the 1,024-point Sobol reference set a campaign's
    ``target_std`` rule uses: what the rule would see at this n.
    """
    start = time.perf_counter()
    greybox = GreyBox(["y"], space.names, positive=["y"] if POSITIVE else [])
    emulator = GPEmulator(space, ["y"], greybox=greybox, priors=PRIORS, kernel=KERNEL)
    emulator.fit(X, y[:, None])
    mean, std = emulator.predict(X_test)
    seconds = time.perf_counter() - start
    _, ref_std = emulator.predict_unit(space.sobol_unit(1024, seed=104729))
    rel = ref_std[:, 0] / emulator.output_scale[0]
    max_rel, rms_rel = float(rel.max()), float(np.sqrt(np.mean(rel**2)))
    loo = float(loo_metrics(emulator)[0][0])
    return (*score(mean[:, 0], std[:, 0], y_test), seconds, max_rel, rms_rel, loo)


def sklearn_score(space: Space, X: np.ndarray, y: np.ndarray, X_test: np.ndarray,
                  y_test: np.ndarray) -> Scores:  # fmt: skip
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    d = space.dim
    kernel = ConstantKernel() * Matern(length_scale=np.full(d, 0.3), nu=2.5) + WhiteKernel(1e-6)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpr = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=3,
                                       random_state=0).fit(space.to_unit(X), y)  # fmt: skip
        mean, std = gpr.predict(space.to_unit(X_test), return_std=True)
    return (*score(mean, std, y_test), time.perf_counter() - start, np.nan, np.nan, np.nan)


def sizes(budget: int, every: int, start: int) -> list[int]:
    return sorted({*range(start, budget + 1, every), *[c for c in CHECKPOINTS if c <= budget]})


Run = tuple[np.ndarray, np.ndarray, float, list[Any]]


def active_run(function: str, strategy: str, seed: int, budget: int, folder: Path,
               target_std: float | None) -> Run:  # fmt: skip
    """A campaign to the budget; its inputs and outputs in finishing order, wall s, steps."""
    store = folder / f"{function}-{strategy}-{seed}.zarr"
    log = LOG.get(function, set())
    params = {
        p: {"low": lo, "high": hi, "log": p in log} for p, (lo, hi) in BOXES[function].items()
    }
    spec = parse_spec({
        "campaign": {"name": function, "store": str(store), "seed": seed},
        "simulator": {"function": SIMULATORS[function]},
        "parameters": params,
        "outputs": {"y": {"positive": POSITIVE}},
        "design": {"strategy": strategy, "model_lag": MODEL_LAG},
        "execution": {"workers": WORKERS},
        "emulator": {"priors": PRIORS, "kernel": KERNEL},
        "stop": {"max_simulations": budget, "target_std": target_std,
                 "max_failure_rate": 1.0},
    }, base_dir=Path(__file__).resolve().parent)  # fmt: skip
    start = time.perf_counter()
    with Campaign.open(spec) as campaign, PoolExecutor(campaign.runner, 2) as executor:
        campaign.run(executor)
    seconds = time.perf_counter() - start
    opened = CampaignStore.open(store)
    ds = opened.to_xarray().load()
    ok = np.flatnonzero(ds["status"].values == "ok")
    order = ok[np.argsort(ds["finished_at"].values[ok], kind="stable")]
    X = np.column_stack([ds[p].values[order] for p in BOXES[function]])
    return X, ds["y"].values[order], seconds, opened.steps()


def curve(function: str, strategy: str, seed: int, args: argparse.Namespace,
          X_test: np.ndarray, y_test: np.ndarray, folder: Path) -> dict[str, Any]:  # fmt: skip
    f, space = FUNCTIONS[function], space_of(function)
    start_n = max(8, 2 * space.dim + 2)
    record: dict[str, Any] = {"function": function, "strategy": strategy, "seed": seed,
                              "n": [], "nrmse": [], "coverage": [], "fit_seconds": [],
                              "max_rel_std": [], "rms_rel_std": [], "loo_nrmse": []}  # fmt: skip
    wall = 0.0
    if strategy in ("max-variance", "integrated-variance"):
        X, y, wall, steps = active_run(function, strategy, seed, args.budget, folder, None)
        record["steps"] = [(s.n, float(s.max_rel_std[0])) for s in steps]
    elif strategy in ("sobol", "sklearn"):
        X = space.sobol(args.budget, seed=seed)
        y = f(X)
    scorer = sklearn_score if strategy == "sklearn" else fit_score

    def score_at(n: int) -> Scores:
        if strategy == "lhs":
            U = qmc.LatinHypercube(d=space.dim, scramble=True, seed=seed * 7919 + n).random(n)
            Xn = space.from_unit(U)
            return scorer(space, Xn, f(Xn), X_test, y_test)
        return scorer(space, X[:n], y[:n], X_test, y_test)

    for n in sizes(min(args.budget, len(y) if strategy != "lhs" else args.budget), args.every,
                   start_n):  # fmt: skip
        nrmse, coverage, seconds, max_rel, rms_rel, loo = score_at(n)
        record["loo_nrmse"].append(loo)
        record["max_rel_std"].append(max_rel)
        record["rms_rel_std"].append(rms_rel)
        record["n"].append(n)
        record["nrmse"].append(nrmse)
        record["coverage"].append(coverage)
        record["fit_seconds"].append(seconds)
    record["wall_seconds"] = wall
    if args.refine:
        record["needed"] = {str(t): refined(record, t, score_at) for t in NEEDED_TARGETS}
    if POSITIVE:
        record["strategy"] += " (log y)"
    return record


def needed(record: dict[str, Any], target: float) -> int | None:
    """Simulations to reach ``target``: refined to one simulation where it was measured."""
    fine: dict[str, int | None] = record.get("needed", {})
    if str(target) in fine:
        return fine[str(target)]
    return first(record, "nrmse", target)


def refined(record: dict[str, Any], target: float, score_at: Callable[[int], Scores]) -> int | None:
    """The first n reaching ``target``, searched one by one below the grid's first hit.

    Every n between the last grid point above the target and the first one at or below it
    is scored in turn (the grid's own misses are kept: an earlier dip is not searched for).
    """
    hit = first(record, "nrmse", target)
    if hit is None:
        return None
    below = [n for n in record["n"] if n < hit]
    for n in range(below[-1] + 1 if below else hit, hit):
        if score_at(n)[0] <= target:
            return n
    return hit


def at(record: dict[str, Any], n: int) -> float:
    return dict(zip(record["n"], record["nrmse"], strict=True)).get(n, float("nan"))


def fmt(values: list[float], digits: str = ".3g") -> str:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return "-"
    med = float(np.median(v))
    missing = len(values) - len(v)
    extra = f" ({missing} not reached)" if missing else ""
    if len(v) == 1:
        return f"{med:{digits}}{extra}"
    return f"{med:{digits}} [{min(v):{digits}}-{max(v):{digits}}]{extra}"


def table(function: str, records: list[dict[str, Any]]) -> str:
    lines = [f"### {function}", "",
             "| strategy | sims to NRMSE <= 5 % | <= 1 % | <= 0.1 % | NRMSE @25 | @50 | @100 "
             "| @200 | 95 % coverage @100 | @200 | emulator s / sim | campaign wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for strategy in dict.fromkeys(r["strategy"] for r in records):
        rs = [r for r in records if r["strategy"] == strategy]
        n5 = [needed(r, 0.05) for r in rs]
        n1 = [needed(r, 0.01) for r in rs]
        n01 = [needed(r, 0.001) for r in rs]
        cov = [dict(zip(r["n"], r["coverage"], strict=True)).get(100, np.nan) for r in rs]
        cov200 = [dict(zip(r["n"], r["coverage"], strict=True)).get(200, np.nan) for r in rs]
        per_sim = [float(np.sum(r["fit_seconds"]) / max(r["n"][-1], 1)) for r in rs]
        lines.append(
            f"| {strategy} | {fmt(n5, '.0f')} | {fmt(n1, '.0f')} | {fmt(n01, '.0f')} | "
            + " | ".join(fmt([at(r, c) for r in rs]) for c in CHECKPOINTS)
            + f" | {fmt(cov, '.2f')} | {fmt(cov200, '.2f')} | {fmt(per_sim, '.2g')} | "
            + f"{fmt([r['wall_seconds'] for r in rs], '.0f')} |"
        )
    return "\n".join(lines)


def first(record: dict[str, Any], key: str, target: float) -> int | None:
    if key == "rms_and_loo":  # what [stop] target_std does by default
        if "loo_nrmse" not in record:  # runs saved before it was recorded
            return None
        values = np.maximum(record["rms_rel_std"], record["loo_nrmse"])
    else:
        values = record[key]
    for n, v in zip(record["n"], values, strict=True):
        if v <= target:
            return int(n)
    return None


def tracking(function: str, records: list[dict[str, Any]]) -> str:
    """When a ``target_std`` rule would stop, against when the held-out error got there.

    For a target t: needed = first n with held-out NRMSE <= t; the rule on the max relative
    std over the reference set (``target_std`` as emucamp has it) and on its root mean square
    (the emulator's own estimate of the NRMSE). Ratio = stop / needed, per run, median.
    """
    lines = [f"#### {function}: target_std stopping against held-out error", "",
             "| strategy | t | needed (NRMSE <= t) | stop on max rel. std | ratio "
             "| stop on RMS rel. std | ratio | stop on RMS and LOO (default) | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for strategy in dict.fromkeys(r["strategy"] for r in records):
        rs = [r for r in records if r["strategy"] == strategy and r["max_rel_std"]]
        if not rs or not np.isfinite(rs[0]["max_rel_std"][0]):
            continue
        for t in TARGETS:
            need = [first(r, "nrmse", t) for r in rs]
            cells = [fmt([float(n) if n else np.nan for n in need], ".0f")]
            for key in ("max_rel_std", "rms_rel_std", "rms_and_loo"):
                stop = [first(r, key, t) for r in rs]
                ratio = [s / n if s and n else np.nan for s, n in zip(stop, need, strict=True)]
                cells += [fmt([float(v) if v else np.nan for v in stop], ".0f"),
                          fmt(ratio, ".2f")]  # fmt: skip
            lines.append(f"| {strategy} | {t:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["sobol", "lhs", "max-variance", "integrated-variance", "sklearn"],
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--every", type=int, default=5, help="Score every this many sims.")
    parser.add_argument("--test-points", type=int, default=2000)
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Count the simulations to each NRMSE target to one simulation, not to the grid.",
    )
    parser.add_argument("--out", type=Path, default=Path("sample_efficiency.json"))
    parser.add_argument(
        "--priors",
        choices=["botorch", "none"],
        default="none",
        help="The emulator's [emulator] priors setting.",
    )
    parser.add_argument(
        "--kernel",
        choices=["rbf", "matern-5/2"],
        default="rbf",
        help="The emulator's [emulator] kernel setting.",
    )
    parser.add_argument(
        "--positive", action="store_true", help="Declare the output positive: the GP models log y."
    )
    parser.add_argument(
        "--model-lag",
        type=float,
        default=0.25,
        help="The campaigns' [design] model_lag (0: none, the loop's speed decides).",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="The campaigns' [execution] workers: simulations in flight (1: sequential).",
    )
    parser.add_argument(
        "--tables-from",
        type=Path,
        nargs="+",
        help="Print the tables of saved runs (--out files) and exit.",
    )
    args = parser.parse_args()  # fmt: skip
    if args.tables_from:
        saved = [r for path in args.tables_from for r in json.loads(path.read_text())]
        for function in dict.fromkeys(r["function"] for r in saved):
            records = [r for r in saved if r["function"] == function]
            print(table(function, records), tracking(function, records), sep="\n\n", end="\n\n")
        return
    global PRIORS, KERNEL, POSITIVE, MODEL_LAG, WORKERS
    PRIORS, KERNEL, POSITIVE = args.priors, args.kernel, args.positive
    MODEL_LAG = args.model_lag or None
    WORKERS = args.workers
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for function in args.functions:
            space = space_of(function)
            X_test = space.from_unit(
                np.random.default_rng(12345).random((args.test_points, space.dim))
            )
            y_test = FUNCTIONS[function](X_test)
            records = []
            for strategy in args.strategies:
                for seed in range(args.seeds):
                    started = time.perf_counter()
                    record = curve(function, strategy, seed, args, X_test, y_test, Path(tmp))
                    records.append(record)
                    print(f"# {function} {strategy} seed {seed}: "
                          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
            results += records
            print(table(function, records), flush=True)
            print(tracking(function, records), flush=True)
            args.out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
