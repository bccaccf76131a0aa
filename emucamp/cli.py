"""The ``emucamp`` command line: run, status, predict, export, report, validate.

Errors that are the user's to fix (a bad spec, a missing column, a store in use) print one
line and exit with code 2; nothing is written before the input has been checked.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emucamp.errors import EmucampError

app = typer.Typer(
    name="emucamp",
    help="Active-learning emulation campaigns: GP emulator + Dask + Zarr, driven by Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True)


def _fail(exc: Exception) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _quiet_dask() -> None:
    # Worker processes inherit these: keep distributed's INFO chatter off the terminal.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Campaign spec (.toml, .yaml).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Run a campaign until a stop rule fires; rerunning the same spec resumes it."""
    from emucamp.spec import load_spec

    try:
        campaign_spec = load_spec(spec)
        _quiet_dask()
        from emucamp.flows import run_campaign  # Prefect loads only for a valid spec

        outcome = run_campaign(campaign_spec)
    except EmucampError as exc:
        raise _fail(exc) from None
    if json_out:
        print(json.dumps(outcome))
        return
    c = outcome["counts"]
    console.print(
        f"[bold green]Stopped:[/] {outcome['reason']} ([cyan]{outcome['rule']}[/])\n"
        f"[bold]Simulations:[/] {c['ok']} ok, {c['failed']} failed, {c['timeout']} timeout "
        f"({outcome['simulated']} in this run)\n"
        f"[bold]Store:[/] {outcome['store']}\n"
        f"Next: emucamp status {outcome['store']}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="Campaign spec (.toml, .yaml).")]) -> None:
    """Check a spec and its simulator without running anything."""
    from emucamp.campaign import build_simulator, load_pool
    from emucamp.spec import load_spec

    try:
        campaign_spec = load_spec(spec)
        pool = None
        if campaign_spec.pool is not None:
            campaign_spec, pool = load_pool(campaign_spec)
        build_simulator(campaign_spec)
    except EmucampError as exc:
        raise _fail(exc) from None
    pool_note = f", pool of {len(pool)} candidates" if pool is not None else ""
    console.print(
        f"[green]ok[/] {spec}: {len(campaign_spec.parameters)} parameters, "
        f"{len(campaign_spec.outputs)} outputs{pool_note}, store {campaign_spec.store_path}",
        highlight=False,
    )


def _fmt(value: Any) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
    )


@app.command()
def status(
    store: Annotated[Path, typer.Argument(help="Campaign store (a .zarr folder).")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Summarise a campaign from its store: counts, uncertainty, stop reason."""
    from emucamp.storage import CampaignStore

    try:
        summary = CampaignStore.open(store, mode="r").summary()
    except EmucampError as exc:
        raise _fail(exc) from None
    if json_out:
        print(json.dumps(summary))
        return
    c = summary["counts"]
    state = summary["stop_reason"] or "not stopped (running, or interrupted: rerun to resume)"
    console.print(
        f"[bold]Campaign[/] {summary['campaign']}  [dim]{summary['store']}[/]", highlight=False
    )
    console.print(
        f"Simulations: {summary['finished']} finished of budget {summary['budget']} — "
        f"{c['ok']} ok, {c['failed']} failed, {c['timeout']} timeout, {c['pending']} pending",
        highlight=False,
    )
    console.print(f"Retrainings: {summary['steps']}   Stopped: {state}", highlight=False)
    latest = summary["latest"]
    if latest is not None:
        table = Table(title=f"Emulator at n = {latest['n']}", title_justify="left")
        for col in ("output", "max rel. std", "mean rel. std", "LOO NRMSE", "LOO 95% coverage"):
            table.add_column(col, justify="right" if col != "output" else "left")
        for name in summary["outputs"]:
            table.add_row(
                name, _fmt(latest["max_rel_std"][name]), _fmt(latest["mean_rel_std"][name]),
                _fmt(latest["loo_nrmse"][name]), _fmt(latest["loo_coverage"][name]),
            )  # fmt: skip
        console.print(table)
        if summary["target_std"] is not None:
            console.print(f"Target: max relative std <= {summary['target_std']:g}", highlight=False)
    pool = summary.get("pool")
    if pool:
        line = f"Pool: {pool['candidates']} candidates, {pool.get('simulated', 0):.0f} simulated"
        if "n_pass" in pool:
            line += (
                f", {pool['n_pass']:.0f} pass (level {pool['threshold']:.4g}), least class "
                f"confidence {pool['min_confidence']:.4f}, expected accuracy "
                f"{100 * pool.get('expected_accuracy', float('nan')):.2f} %"
            )
        console.print(line, highlight=False)


@app.command()
def predict(
    store: Annotated[Path, typer.Argument(help="Campaign store (a .zarr folder).")],
    inputs: Annotated[Path, typer.Argument(help="CSV with one column per parameter.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write CSV here (default: stdout).")
    ] = None,
) -> None:
    """Predict mean and std of every output at the inputs, from the store's emulator."""
    import pandas as pd

    from emucamp.emulators.gp import load_emulator

    try:
        if not inputs.is_file():
            raise EmucampError(f"{inputs}: inputs file not found")
        try:
            table = pd.read_csv(inputs)
        except (ValueError, pd.errors.ParserError) as exc:
            raise EmucampError(f"{inputs}: not a readable CSV ({exc})") from None
        emulator = load_emulator(store)
        try:
            result = emulator.predict(table)
        except EmucampError as exc:
            raise EmucampError(f"{inputs}: {exc}") from None
    except EmucampError as exc:
        raise _fail(exc) from None
    if output is None:
        result.to_csv(sys.stdout, index=False)
        return
    tmp = output.with_name(output.name + ".tmp")
    result.to_csv(tmp, index=False)
    tmp.replace(output)  # never a half-written file under the requested name
    errors.print(f"wrote {len(result)} predictions to {output}", highlight=False)


@app.command()
def export(
    store: Annotated[Path, typer.Argument(help="Campaign store of a screening campaign.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write CSV (or .parquet) here (default: stdout)."),
    ] = None,
    passing: Annotated[bool, typer.Option("--passing", help="Only candidates that pass.")] = False,
) -> None:
    """Write every candidate's estimate and class: id, features, mean, std, P(pass), simulated."""
    import numpy as np
    import pandas as pd

    from emucamp.storage import CampaignStore

    try:
        opened = CampaignStore.open(store, mode="r")
        pool = opened.candidates()
    except EmucampError as exc:
        raise _fail(exc) from None
    spec_pool = opened.spec.get("pool") or {}
    id_name = spec_pool.get("id") or "candidate"
    table = pd.DataFrame({id_name: pool["id"]})
    for j, name in enumerate(opened.parameters):
        table[name] = pool["features"][:, j]
    for j, name in enumerate(opened.outputs):
        table[f"{name}_mean"] = pool["mean"][:, j]
        table[f"{name}_std"] = pool["std"][:, j]
    table["p_pass"] = pool["p_pass"]
    table["passes"] = pool["passes"] == 1
    table["simulated"] = pool["sample"] >= 0
    table["sample"] = pool["sample"]
    if passing:
        table = table[table["passes"]].sort_values("p_pass", ascending=False, kind="stable")
    if output is None:
        table.to_csv(sys.stdout, index=False)
        return
    tmp = output.with_name(output.name + ".tmp")
    if output.suffix.lower() in {".parquet", ".pq"}:
        table.to_parquet(tmp, index=False)
    else:
        table.to_csv(tmp, index=False)
    tmp.replace(output)  # never a half-written file under the requested name
    n_sim = int(np.sum(table["simulated"]))
    errors.print(f"wrote {len(table)} candidates ({n_sim} simulated) to {output}", highlight=False)


@app.command()
def report(
    store: Annotated[Path, typer.Argument(help="Campaign store (a .zarr folder).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Folder for index.md + PNGs.")
    ] = Path("report"),
) -> None:
    """Write plots (convergence, parity, relevance, slices, pool) and an index.md."""
    from emucamp.report import write_report

    try:
        index = write_report(store, output)
    except EmucampError as exc:
        raise _fail(exc) from None
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    errors.print(f"wrote {index} and {len(pngs)} plots: {', '.join(pngs)}", highlight=False)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
