"""A campaign's progress read from its store alone: what ``emucamp run`` and ``status`` show.

The store is the one source: the process running the campaign and any other process (``emucamp
status --watch`` in a second terminal, a notebook) see the same figures, read-only, while the
campaign writes.

Example:
    >>> snap = ProgressSnapshot.read("runs/heat2d.zarr")
    >>> snap.finished, snap.budget, snap.in_flight
    (57, 120, 4)
    >>> Console().print(snap.renderable())
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from emucamp.storage import CampaignStore

__all__ = ["ProgressSnapshot", "format_duration", "try_read"]

_RATE_WINDOW = 300.0  # seconds of recent results the rate (and so the ETA) is taken over


def format_duration(seconds: float) -> str:
    """``3725.0`` -> ``"1:02:05"``, ``83.0`` -> ``"1:23"``."""
    if not math.isfinite(seconds):
        return "-"
    s = round(max(0.0, seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass(frozen=True)
class ProgressSnapshot:
    """Where a campaign stands, from its store.

    Attributes:
        campaign: Campaign name.
        store: Store path.
        budget: ``stop.max_simulations``.
        finished: Simulations with a final status (ok, failed, timeout).
        in_flight: Samples recorded as pending (running, queued, or left by a crash).
        counts: Samples per status.
        uncertainty: One line: the latest uncertainty against its target, or why there is none.
        stop_reason: Why the campaign stopped ("" while it has not).
        running: A live process holds the store's writer lock.
        elapsed: Seconds from ``since`` (or the first submission) to now, or to the last
            result once nothing runs.
        rate: Simulations finished per second over the last few minutes (NaN if unknown).
    """

    campaign: str
    store: str
    budget: int
    finished: int
    in_flight: int
    counts: dict[str, int]
    uncertainty: str
    stop_reason: str
    running: bool
    elapsed: float
    rate: float

    @classmethod
    def read(
        cls, path: str | Path, since: float | None = None, running: bool | None = None
    ) -> ProgressSnapshot:
        """Read the store at ``path`` (read-only; safe while a campaign writes it).

        Args:
            path: The campaign store.
            since: Epoch seconds the elapsed time and the rate count from (this run's start);
                default: the store's first submission.
            running: Whether the campaign runs, when the caller knows (it runs it); default:
                whether a live process holds the store's writer lock.

        Raises:
            StoreError: ``path`` is not a readable campaign store.
        """
        return cls.of(CampaignStore.open(path, mode="r"), since=since, running=running)

    @classmethod
    def of(
        cls,
        store: CampaignStore,
        summary: dict[str, Any] | None = None,
        since: float | None = None,
        running: bool | None = None,
    ) -> ProgressSnapshot:
        """The snapshot of an opened store; see :meth:`read`.

        Args:
            store: The store, opened read-only.
            summary: Its :meth:`~CampaignStore.summary`, if the caller has it already.
            since: As for :meth:`read`.
            running: As for :meth:`read`.
        """
        summary = summary if summary is not None else store.summary()
        times = store.timestamps()
        if running is None:
            running = store.writer_active
        running = running and not summary["stop_reason"]
        now = time.time()
        submitted = times["submitted_at"][np.isfinite(times["submitted_at"])]
        finished_at = times["finished_at"][np.isfinite(times["finished_at"])]
        start = since if since is not None else (float(submitted.min()) if submitted.size else now)
        end = now if running or not finished_at.size else float(finished_at.max())
        elapsed = max(0.0, end - start)
        window_start = max(start, end - _RATE_WINDOW)
        recent = int(np.sum(finished_at >= window_start))
        rate = recent / (end - window_start) if end - window_start > 1.0 and recent else math.nan
        counts = summary["counts"]
        return cls(
            campaign=summary["campaign"],
            store=summary["store"],
            budget=int(summary["budget"] or 0),
            finished=int(summary["finished"]),
            in_flight=int(counts["pending"]),
            counts=counts,
            uncertainty=_uncertainty(summary, store.spec),
            stop_reason=summary["stop_reason"],
            running=running,
            elapsed=elapsed,
            rate=rate,
        )

    @property
    def eta(self) -> float:
        """Seconds until the budget is spent at the recent rate (a stop rule may come sooner)."""
        left = max(0, self.budget - self.finished)
        if not self.running or left == 0:
            return 0.0
        return left / self.rate if self.rate > 0 else math.nan

    @property
    def state(self) -> str:
        """``running``, ``stopped: <reason>``, or ``not running: ...`` (no process, no reason)."""
        if self.stop_reason:
            return f"stopped: {self.stop_reason}"
        return "running" if self.running else "not running: interrupted (rerun the spec to resume)"

    def renderable(self) -> RenderableType:
        """A rich renderable: a bar of finished / budget and lines of figures."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        c = self.counts
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(1, self.budget), completed=self.finished, width=32),
            Text(f"{self.finished}/{self.budget} simulations"),
            Text(f"{self.in_flight} in flight", style="cyan"),
            Text(f"{c['failed']} failed", style="red" if c["failed"] else "dim"),
            Text(f"{c['timeout']} timeout", style="red" if c["timeout"] else "dim"),
        )
        grid.add_row(Text(self.campaign or "campaign"), bar)
        grid.add_row("uncertainty", Text(self.uncertainty))
        clock = f"elapsed {format_duration(self.elapsed)}"
        if self.running:
            rate = f"{self.rate:.3g} sims/s" if math.isfinite(self.rate) else "rate not yet known"
            clock += f" · ≤ {format_duration(self.eta)} left at the budget ({rate})"
        grid.add_row("time", Text(clock))
        grid.add_row("state", Text(self.state, style="green" if self.stop_reason else "yellow"))
        return Group(grid)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-able values (``eta`` and ``state`` included)."""
        return {
            "campaign": self.campaign, "store": self.store, "budget": self.budget,
            "finished": self.finished, "in_flight": self.in_flight, "counts": self.counts,
            "uncertainty": self.uncertainty, "stop_reason": self.stop_reason,
            "running": self.running, "elapsed": self.elapsed,
            "rate": self.rate if math.isfinite(self.rate) else None,
            "eta": self.eta if math.isfinite(self.eta) else None, "state": self.state,
        }  # fmt: skip


def _uncertainty(summary: dict[str, Any], spec: dict[str, Any]) -> str:
    """The latest uncertainty against the spec's target, as one line."""
    stop = spec.get("stop") or {}
    pool = summary.get("pool") or {}
    if "n_pass" in pool:
        target = stop.get("screening_accuracy") or stop.get("screening_confidence")
        return (
            f"{pool['n_pass']:.0f} of {pool['candidates']} pass; expected accuracy "
            f"{100 * pool.get('expected_accuracy', math.nan):.2f} %, least class confidence "
            f"{pool.get('min_confidence', math.nan):.4f}"
            + (f" (target {target:g})" if target else "")
        )
    latest = summary.get("latest")
    if latest is None:
        return "no emulator yet (waiting for the initial design)"
    rms = stop.get("target_std_statistic", "max") == "rms"
    key, label = ("mean_rel_std", "RMS rel. std") if rms else ("max_rel_std", "max rel. std")
    worst_name, worst = max(latest[key].items(), key=lambda kv: kv[1])
    line = f"{label} {worst:.3g} of {worst_name}"
    if stop.get("target_std") is not None:
        line += f" (target {stop['target_std']:g})"
    loo = max(latest["loo_nrmse"].values())
    if math.isfinite(loo):
        line += f" · LOO NRMSE {loo:.3g}"
        if stop.get("target_loo_nrmse") is not None:
            line += f" (target {stop['target_loo_nrmse']:g})"
    return f"{line} · n = {latest['n']}"


def try_read(
    path: str | Path, since: float | None = None, running: bool | None = None
) -> ProgressSnapshot | None:
    """:meth:`ProgressSnapshot.read`, or ``None`` while the store does not exist or is mid-write."""
    try:
        return ProgressSnapshot.read(path, since, running)
    except Exception:
        # A display poll never fails the campaign: a chunk being rewritten can read short
        # (zarr raises codec errors of several kinds), and the next poll gets it whole.
        return None
