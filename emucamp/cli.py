"""The ``emucamp`` command line: run, status, predict, export, report, sensitivity, validate.

Errors that are the user's to fix (a bad spec, a missing column, a store in use) print one
line and exit with code 2; nothing is written before the input has been checked.
"""

from __future__ import annotations

import contextlib
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


def _prefect_console(level: str) -> None:
    # Set before Prefect is imported (it configures logging once). Only the terminal handler
    # changes: the run's INFO logs still reach the Prefect API and its UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", level)


class _LiveView:
    """What the live display shows: the store's progress, re-read at most once a second."""

    def __init__(self, store: Path, since: float) -> None:
        self.store, self.since = store, since
        self._snapshot: Any = None
        self._read_at = -math.inf

    def refresh(self) -> None:
        """Read the store again at the next frame."""
        self._read_at = -math.inf

    def __call__(self) -> Any:
        import time

        from rich.text import Text

        from emucamp.progress import try_read

        if time.monotonic() - self._read_at >= 1.0:
            self._read_at = time.monotonic()
            self._snapshot = try_read(self.store, self.since, running=True) or self._snapshot
        if self._snapshot is None:
            return Text("starting: Prefect API, Dask workers, initial design ...", style="dim")
        return self._snapshot.renderable()


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Campaign spec (.toml, .yaml).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print only the outcome, as JSON (for scripts).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing but errors; the exit code tells.")
    ] = False,
) -> None:
    """Run a campaign until a stop rule fires; rerunning the same spec resumes it.

    On a terminal a live display shows simulations done and in flight, failures, the
    uncertainty against its target, elapsed and remaining time; Prefect's own log lines are
    kept to warnings there (all of them still reach the Prefect API). Piped, the log lines
    are printed as they come instead.
    """
    import time

    from rich.live import Live

    from emucamp.spec import load_spec

    live = errors.is_terminal and not (json_out or quiet)
    try:
        campaign_spec = load_spec(spec)
        _quiet_dask()
        if quiet:
            _prefect_console("ERROR")
        elif live or json_out:
            _prefect_console("WARNING")
        from emucamp.flows import run_campaign  # Prefect loads only for a valid spec

        if live:
            view = _LiveView(campaign_spec.store_path, since=time.time())
            with Live(get_renderable=view, console=errors, refresh_per_second=2):
                outcome = run_campaign(campaign_spec)
                view.refresh()  # the final figures, not a second-old frame
        else:
            outcome = run_campaign(campaign_spec)
    except EmucampError as exc:
        raise _fail(exc) from None
    if json_out:
        print(json.dumps(outcome))
        return
    if quiet:
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
def validate(
    spec: Annotated[Path, typer.Argument(help="Campaign spec (.toml, .yaml).")],
    job_script: Annotated[
        bool,
        typer.Option(
            "--job-script", help="Also print the batch script of [execution.cluster] jobs."
        ),
    ] = False,
) -> None:
    """Check a spec and its simulator without running anything."""
    from emucamp.campaign import build_greybox, build_simulator, load_pool
    from emucamp.spec import load_spec

    try:
        campaign_spec = load_spec(spec)
        pool = None
        if campaign_spec.pool is not None:
            campaign_spec, pool = load_pool(campaign_spec)
        build_simulator(campaign_spec)
        build_greybox(campaign_spec)  # imports the prior mean, if any
        script = None
        if job_script:
            from emucamp.cluster import job_script as make_job_script

            script = make_job_script(campaign_spec)
    except EmucampError as exc:
        raise _fail(exc) from None
    if script is not None:
        print(
            script
        )  # stdout holds the script alone: `emucamp validate s.toml --job-script > j.sh`
    pool_note = f", pool of {len(pool)} candidates" if pool is not None else ""
    (errors if script is not None else console).print(
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
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Follow a running campaign live until it stops (Ctrl-C leaves)."
        ),
    ] = False,
) -> None:
    """Summarise a campaign from its store: progress, uncertainty, stop reason.

    Reads the store only, so it works while another process runs the campaign.
    """
    from emucamp.progress import ProgressSnapshot
    from emucamp.storage import CampaignStore

    try:
        opened = CampaignStore.open(store, mode="r")
        if watch and not json_out:
            _watch(store, ProgressSnapshot.of(opened))
            opened = CampaignStore.open(store, mode="r")  # what the campaign wrote meanwhile
        summary = opened.summary()
        snapshot = ProgressSnapshot.of(opened, summary)
    except EmucampError as exc:
        raise _fail(exc) from None
    if json_out:
        print(json.dumps({**summary, "progress": snapshot.to_dict()}))
        return
    console.print(snapshot.renderable())
    console.print(
        f"[dim]{summary['store']} · {summary['steps']} retrainings · "
        f"{summary['counts']['ok']} ok[/]",
        highlight=False,
    )
    latest = summary["latest"]
    if latest is not None:
        table = Table(title=f"Emulator at n = {latest['n']}", title_justify="left")
        for col in ("output", "max rel. std", "RMS rel. std", "LOO NRMSE", "LOO 95% coverage"):
            table.add_column(col, justify="right" if col != "output" else "left")
        for name in summary["outputs"]:
            table.add_row(
                name, _fmt(latest["max_rel_std"][name]), _fmt(latest["mean_rel_std"][name]),
                _fmt(latest["loo_nrmse"][name]), _fmt(latest["loo_coverage"][name]),
            )  # fmt: skip
        console.print(table)
        if summary["target_std"] is not None:
            statistic = "RMS" if summary.get("target_std_statistic") == "rms" else "max"
            console.print(
                f"Target: {statistic} relative std <= {summary['target_std']:g}", highlight=False
            )
    stored = opened.sensitivity
    if stored:
        for j, output in enumerate(stored["outputs"]):
            ranked = sorted(zip(stored["parameters"], stored["st"][j], strict=True),
                            key=lambda kv: -kv[1])  # fmt: skip
            top = ", ".join(f"{name} {value:.2f}" for name, value in ranked[:4])
            console.print(f"Total Sobol indices of {output}: {top}", highlight=False)
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


def _watch(store: Path, snapshot: Any, grace: float = 30.0) -> None:
    """Redraw the progress every 2 s until the campaign stops or its process goes.

    A campaign's process lets go of the store for a few seconds while it starts (the spec
    is checked before the Prefect API and Dask are up), so only ``grace`` seconds without
    a writer count as gone.
    """
    import time

    from rich.live import Live

    from emucamp.progress import try_read

    seen = time.monotonic()
    with (
        contextlib.suppress(KeyboardInterrupt),
        Live(snapshot.renderable(), console=console, refresh_per_second=1, transient=True) as live,
    ):
        while not snapshot.stop_reason and time.monotonic() - seen < grace:
            time.sleep(2.0)
            snapshot = try_read(store) or snapshot
            if snapshot.running:
                seen = time.monotonic()
            live.update(snapshot.renderable())


@app.command()
def predict(
    store: Annotated[Path, typer.Argument(help="Campaign store (a .zarr folder).")],
    inputs: Annotated[Path, typer.Argument(help="CSV with one column per parameter.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write CSV here (default: stdout).")
    ] = None,
) -> None:
    """Predict mean and std of every output at the inputs, from the store's emulator.

    Each row also gets its Mahalanobis distance to the training inputs (``ood_distance``)
    and an ``ood`` flag: beyond the calibrated threshold, or outside the parameter bounds.
    """
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
    flagged = int(result["ood"].sum())
    if flagged:
        guard = emulator.guard
        errors.print(
            f"[yellow]warning:[/] {flagged} of {len(result)} rows are out of distribution "
            f"(Mahalanobis distance to the training inputs above {guard.threshold:.3g}, "
            f"{guard.method} at {guard.level:g}, or outside the parameter bounds): "
            "trust those predictions less; see the ood and ood_distance columns",
            highlight=False,
        )
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


@app.command()
def sensitivity(
    store: Annotated[Path, typer.Argument(help="Campaign store (a .zarr folder).")],
    samples: Annotated[
        int, typer.Option(help="Sobol base samples N (a power of 2); N x (d + 2) evaluations.")
    ] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the samples and the bootstrap.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the indices as JSON.")] = False,
) -> None:
    """Which inputs matter: Sobol indices (first order, total; SALib) and ARD relevance.

    Computed on the store's emulator (its mean; the simulator is not called) and stored in
    the store, unless a running campaign holds it. A field output gets generalised indices
    (shares of the whole field's variance).
    """
    from emucamp.emulators.gp import load_emulator
    from emucamp.emulators.sensitivity import sobol_indices, table_rows
    from emucamp.errors import StoreLockedError
    from emucamp.storage import CampaignStore

    try:
        emulator = load_emulator(store)
        try:
            found = sobol_indices(emulator, samples=samples, seed=seed)
        except ValueError as exc:
            raise EmucampError(f"--samples: {exc}") from None
        try:
            with CampaignStore.open(store, mode="a") as writable:
                writable.set_sensitivity(found.to_dict())
            saved = True
        except StoreLockedError:
            saved = False
    except EmucampError as exc:
        raise _fail(exc) from None
    if json_out:
        print(json.dumps(found.to_dict()))
        return
    table = Table(
        title=f"Sensitivity of the emulator (n = {found.n}, {found.evaluations} evaluations of "
        "its mean; ± 95 % bootstrap)",
        title_justify="left",
    )
    for col in ("output", "input", "first order S1", "total ST", "GP relevance"):
        table.add_column(col, justify="left" if col in ("output", "input") else "right")
    for row in table_rows(found):
        table.add_row(
            str(row["output"]), str(row["parameter"]),
            f"{row['S1']:.3f} ± {row['S1_conf']:.3f}", f"{row['ST']:.3f} ± {row['ST_conf']:.3f}",
            f"{row['relevance']:.3f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        "[dim]ST - S1 is an input's share through interactions; GP relevance (1 / lengthscale) "
        "measures smoothness, not variance.[/]"
        + ("" if saved else "\n[yellow]Not stored: a running campaign holds the store.[/]"),
        highlight=False,
    )


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
