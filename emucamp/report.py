"""A campaign report from its store alone: PNG plots and an ``index.md`` that shows them.

Plots (matplotlib, no display needed):

- ``convergence.png``: max and mean relative posterior std and LOO NRMSE against the number
  of simulations, per output, with the spec's targets;
- ``parity-<output>.png``: leave-one-out prediction (with 2 std bars) against the simulated
  value;
- ``relevance.png``: each input's relevance per output, ``1 / lengthscale`` normalised to sum
  to one (a quick, model-based sensitivity measure);
- ``slice-<output>.png``: mean and std over the two most relevant inputs, the others at the
  centre of their range, with the simulated points on top;
- ``field-<output>.png`` (field outputs): the lowest, median and highest simulated fields
  against their leave-one-out predictions with 2 std bands;
- ``pool.png`` (screening campaigns): the pool over its two most relevant features,
  coloured by P(pass), simulated candidates marked.

Example:
    >>> write_report("runs/borehole.zarr", "report/")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from emucamp.emulators.diagnostics import Region, regions
from emucamp.emulators.gp import GPEmulator
from emucamp.emulators.sensitivity import ard_relevance
from emucamp.errors import StoreError
from emucamp.storage import CampaignStore

__all__ = ["regions_markdown", "write_report"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str) -> str:
    """Lay out, write ``out/name`` and free the figure; return ``name``."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _pyplot().close(fig)
    return name


def _convergence(store: CampaignStore, spec: dict[str, Any], out: Path) -> str:
    plt = _pyplot()
    steps = store.steps()
    n = np.array([s.n for s in steps])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for j, name in enumerate(store.outputs):
        ax1.plot(n, [s.max_rel_std[j] for s in steps], marker="o", ms=3, label=f"{name}: max")
        ax1.plot(n, [s.mean_rel_std[j] for s in steps], ls="--", label=f"{name}: RMS")
        ax2.plot(n, [s.loo_nrmse[j] for s in steps], marker="o", ms=3, label=name)
    stop = spec.get("stop") or {}
    if stop.get("target_std"):
        ax1.axhline(stop["target_std"], color="k", lw=1, ls=":", label="target_std")
    if stop.get("target_loo_nrmse"):
        ax2.axhline(stop["target_loo_nrmse"], color="k", lw=1, ls=":", label="target_loo_nrmse")
    ax1.set(xlabel="simulations in the fit (n)", ylabel="posterior std / output std",
            title="Uncertainty over the reference set", yscale="log")  # fmt: skip
    ax2.set(xlabel="simulations in the fit (n)", ylabel="LOO RMSE / output std",
            title="Leave-one-out error", yscale="log")  # fmt: skip
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    return _save(fig, out, "convergence.png")


def _scalars(emulator: GPEmulator) -> list[tuple[int, str]]:
    """``(column, name)`` of each scalar output (field outputs get their own plot)."""
    return [(c.start, n) for n, c in emulator.columns.items() if c.stop - c.start == 1]


def _parity(emulator: GPEmulator, out: Path) -> list[str]:
    plt = _pyplot()
    _, Y = emulator.training_data()
    mean, std = emulator.loo()
    names = []
    for j, name in _scalars(emulator):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.errorbar(Y[:, j], mean[:, j], yerr=2 * std[:, j], fmt="o", ms=3, alpha=0.7,
                    elinewidth=0.8, label="LOO mean ± 2 std")  # fmt: skip
        lo, hi = (
            float(min(Y[:, j].min(), mean[:, j].min())),
            float(max(Y[:, j].max(), mean[:, j].max())),
        )
        ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="y = x")
        inside = np.mean(np.abs(mean[:, j] - Y[:, j]) <= 2 * std[:, j])
        title = f"{name}: parity (n = {len(Y)}, {100 * inside:.0f} % within 2 std)"
        ax.set(xlabel=f"simulated {name}", ylabel=f"leave-one-out predicted {name}", title=title)
        ax.legend(fontsize=8)
        names.append(_save(fig, out, f"parity-{name}.png"))
    return names


def _relevance(emulator: GPEmulator) -> np.ndarray:
    """``m x d`` input relevance: inverse lengthscales, each row summing to one."""
    return ard_relevance(emulator.lengthscales)


def _relevance_plot(emulator: GPEmulator, out: Path) -> str:
    plt = _pyplot()
    rel = _relevance(emulator)
    names = emulator.space.names
    m, d = rel.shape
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * d * m / 2 + 3), 4))
    width = 0.8 / m
    for j, output in enumerate(emulator.outputs):
        ax.bar(np.arange(d) + j * width - 0.4 + width / 2, rel[j], width, label=output)
    ax.set_xticks(np.arange(d), names, rotation=30 if d > 6 else 0)
    ax.set(xlabel="input", ylabel="relevance (1 / lengthscale, normalised)",
           title="Which inputs each output depends on")  # fmt: skip
    ax.legend(fontsize=8)
    return _save(fig, out, "relevance.png")


def _slices(emulator: GPEmulator, out: Path, grid: int = 60) -> list[str]:
    plt = _pyplot()
    space = emulator.space
    if space.dim < 2:
        return []
    X, _ = emulator.training_data()
    files = []
    for j, name in _scalars(emulator):
        k = emulator.outputs.index(name)
        a, b = (int(i) for i in np.argsort(-_relevance(emulator)[k])[:2])
        g = np.linspace(0, 1, grid)
        ga, gb = np.meshgrid(g, g)
        U = np.full((grid * grid, space.dim), 0.5)
        U[:, a], U[:, b] = ga.ravel(), gb.ravel()
        mean, std = emulator.predict_unit(U)
        phys = space.from_unit(U)
        xa, xb = phys[:, a].reshape(grid, grid), phys[:, b].reshape(grid, grid)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for ax, values, label in ((axes[0], mean, "mean"), (axes[1], std, "std")):
            c = ax.pcolormesh(xa, xb, values[:, j].reshape(grid, grid), shading="auto",
                              cmap="viridis" if label == "mean" else "magma")  # fmt: skip
            fig.colorbar(c, ax=ax, label=f"{name} {label}")
            ax.scatter(X[:, a], X[:, b], s=8, c="w", edgecolors="k", linewidths=0.4,
                       label="simulated (projected)")  # fmt: skip
            p = space.parameters
            ax.set(xlabel=space.names[a], ylabel=space.names[b],
                   xscale="log" if p[a].log else "linear", yscale="log" if p[b].log else "linear",
                   title=f"{name} {label}; other inputs at their centre")  # fmt: skip
            ax.legend(fontsize=7, loc="upper right")
        files.append(_save(fig, out, f"slice-{name}.png"))
    return files


def _fields(emulator: GPEmulator, out: Path) -> list[str]:
    """Per field output: three simulated fields against their leave-one-out predictions."""
    plt = _pyplot()
    _, Y = emulator.training_data()
    mean, std = emulator.loo()
    files = []
    for name, cols in emulator.columns.items():
        if cols.stop - cols.start == 1:
            continue
        F, M, S = Y[:, cols], mean[:, cols], std[:, cols]
        order = np.argsort(F.mean(axis=1))
        picks = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
        index = np.arange(F.shape[1])
        fig, ax = plt.subplots(figsize=(8, 4.4))
        for colour, i in zip(("C0", "C1", "C2"), dict.fromkeys(picks), strict=False):
            ax.plot(index, F[i], color=colour, lw=1.5, label=f"sample {i}: simulated")
            ax.plot(index, M[i], color=colour, lw=1, ls="--", label=f"sample {i}: LOO mean")
            ax.fill_between(index, M[i] - 2 * S[i], M[i] + 2 * S[i], color=colour, alpha=0.2)
        fields = emulator.basis.summary().get(name, {})
        ax.set(xlabel=f"{name} index", ylabel=name,
               title=f"{name}: lowest, median and highest simulated fields, leave-one-out "
               f"± 2 std ({fields.get('components', '?')} components, "
               f"{100 * fields.get('retained', float('nan')):.2f} % of variance)")  # fmt: skip
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=3)
        files.append(_save(fig, out, f"field-{name}.png"))
    return files


def _pool(store: CampaignStore, emulator: GPEmulator, out: Path) -> str | None:
    if not store.has_candidates:
        return None
    cand = store.candidates()
    if np.isnan(cand["p_pass"]).all():
        return None
    plt = _pyplot()
    space = emulator.space
    goal = (store.spec.get("goal") or {}).get("output", store.outputs[0])
    j = store.outputs.index(goal)
    order = np.argsort(-_relevance(emulator)[j])
    a, b = int(order[0]), int(order[1]) if space.dim > 1 else int(order[0])
    F = cand["features"]
    rng = np.random.default_rng(0)
    show = rng.choice(len(F), size=min(len(F), 50_000), replace=False)  # a readable cloud
    fig, ax = plt.subplots(figsize=(6.5, 5))
    c = ax.scatter(F[show, a], F[show, b], c=cand["p_pass"][show], s=4, cmap="coolwarm_r",
                   vmin=0, vmax=1, alpha=0.7)  # fmt: skip
    fig.colorbar(c, ax=ax, label="P(pass)")
    done = cand["sample"] >= 0
    ax.scatter(F[done, a], F[done, b], s=14, facecolors="none", edgecolors="k", linewidths=0.6,
               label=f"simulated ({int(done.sum())})")  # fmt: skip
    s = store.screening
    ax.set(xlabel=space.names[a], ylabel=space.names[b],
           title=f"Pool: {int(s.get('n_pass', 0))} of {len(F)} pass ({goal}, level "
                 f"{s.get('threshold', math.nan):.4g})")  # fmt: skip
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, out, "pool.png")


def regions_markdown(found: list[Region]) -> str:
    """A markdown table of :func:`~emucamp.emulators.diagnostics.regions`, one row per output."""
    kinds = ["lowest simulated", "highest simulated", "least certain", "largest LOO error"]
    heads = ["lowest simulated", "highest simulated", "least certain (std)", "largest LOO error"]
    rows = ["| output | " + " | ".join(heads) + " |", "|---" * (len(kinds) + 1) + "|"]
    for output in dict.fromkeys(r.output for r in found):
        cells = []
        for kind in kinds:
            r = next(r for r in found if r.output == output and r.kind == kind)
            where = ", ".join(f"{k}={v:.4g}" for k, v in r.inputs.items())
            cells.append(f"{r.value:.4g} at {where}")
        rows.append(f"| {output} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_report(store_path: str | Path, out_dir: str | Path) -> Path:
    """Write the plots and ``index.md`` for a campaign store into ``out_dir``.

    Returns:
        The path of ``index.md``.

    Raises:
        StoreError: no store there, or no emulator fitted yet.
    """
    store = CampaignStore.open(store_path, mode="r")
    state = store.load_emulator_state()  # raises a one-line StoreError if there is none yet
    emulator = GPEmulator.from_state(state)
    if not store.steps():
        raise StoreError(f"{store.path}: no retraining recorded yet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = store.spec
    summary = store.summary()
    c = summary["counts"]
    lines = [
        f"# Campaign {summary['campaign']}",
        "",
        f"- Store: `{store.path}`",
        f"- Simulations: {c['ok']} ok, {c['failed']} failed, {c['timeout']} timeout, "
        f"{c['pending']} pending",
        f"- Stopped: {summary['stop_reason'] or 'not stopped (running or interrupted)'}",
        f"- Emulator: n = {emulator.n}; load it with `emucamp.load_emulator({str(store.path)!r})`",
        "",
        "## Convergence",
        "",
        f"![convergence]({_convergence(store, spec, out)})",
        "",
        "## Leave-one-out parity",
        "",
        *[f"![parity]({f})" for f in _parity(emulator, out)],
        "",
        "## Input relevance",
        "",
        f"![relevance]({_relevance_plot(emulator, out)})",
        "",
    ]
    slices = _slices(emulator, out)
    if slices:
        lines += [
            "## Slices over the two most relevant inputs",
            "",
            *[f"![slice]({f})" for f in slices],
            "",
        ]
    fields = _fields(emulator, out)
    if fields:
        lines += ["## Field outputs", "", *[f"![field]({f})" for f in fields], ""]
    reference = emulator.space.sobol_unit(1024, seed=0)
    lines += ["## Best and worst regions", "", regions_markdown(regions(emulator, reference)), ""]
    pool = _pool(store, emulator, out)
    if pool:
        lines += ["## Pool", "", f"![pool]({pool})", ""]
    index = out / "index.md"
    index.write_text("\n".join(lines))
    return index
