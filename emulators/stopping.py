"""Stopping rules: each looks at the campaign's state and says why to stop, or nothing.

Rules compose: :class:`AnyRule` stops on the first rule that holds, and ``rule_a | rule_b``
builds one. The rule's ``name`` and its message are recorded in the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from emucamp.storage import StepRecord

__all__ = [
    "AnyRule",
    "CampaignState",
    "MaxFailureRate",
    "MaxHours",
    "MaxSimulations",
    "ScreeningAccuracy",
    "ScreeningConfidence",
    "StopDecision",
    "StopRule",
    "TargetLooNrmse",
    "TargetStd",
]


@dataclass
class CampaignState:
    """What stop rules see.

    Attributes:
        finished: Simulations finished (ok, failed or timeout), this run and before.
        ok: Finished with status ok.
        failed: Finished with status failed or timeout.
        elapsed_seconds: Wall-clock seconds of this run of the campaign.
        outputs: Output names, in the order of the step arrays.
        step: Diagnostics of the latest retraining, if any.
        errors: Error messages of failed simulations (for the failure summary).
        screening: Latest pool screening summary (``min_confidence``, ``n_pass``,
            ``threshold``), for screening campaigns.
    """

    finished: int = 0
    ok: int = 0
    failed: int = 0
    elapsed_seconds: float = 0.0
    outputs: Sequence[str] = ()
    step: StepRecord | None = None
    errors: list[str] = field(default_factory=list)
    screening: Mapping[str, float] | None = None


@dataclass(frozen=True)
class StopDecision:
    """A rule that fired: its name (``target_std``) and a one-line reason."""

    rule: str
    reason: str


class StopRule(Protocol):
    """Says why the campaign should stop now, or returns ``None``."""

    @property
    def name(self) -> str:
        """Short name recorded in the store (``target_std``)."""
        ...

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Check the rule against the state."""
        ...


class _Composable:
    name = ""

    def __call__(self, state: CampaignState) -> StopDecision | None:
        raise TypeError("abstract")  # pragma: no cover

    def __or__(self, other: StopRule) -> AnyRule:
        return AnyRule([self, other])


@dataclass(frozen=True)
class MaxSimulations(_Composable):
    """Stop once ``limit`` simulations have finished, whatever their status."""

    limit: int
    name: str = "max_simulations"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires when ``finished >= limit``."""
        if state.finished >= self.limit:
            return StopDecision(self.name, f"budget of {self.limit} simulations used")
        return None


@dataclass(frozen=True)
class MaxHours(_Composable):
    """Stop once this run of the campaign has lasted ``hours``."""

    hours: float
    name: str = "max_hours"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires when the elapsed time reaches the limit."""
        if state.elapsed_seconds >= self.hours * 3600:
            return StopDecision(self.name, f"time limit of {self.hours:g} h reached")
        return None


@dataclass(frozen=True)
class TargetStd(_Composable):
    """Stop when every output's relative posterior std on the reference set is <= target.

    ``statistic`` says which: ``rms``, the root mean square over the reference set (the
    emulator's own estimate of its NRMSE, which tracked the held-out NRMSE in
    ``benchmarks/sample_efficiency.py``), or ``max``, its worst point (stricter: it stopped
    up to 2.6x later than the held-out error needed on space-filling designs).

    An early model can be sure of itself and wrong (8 runs of a smooth 2-D function: RMS
    relative std 0.04, leave-one-out NRMSE 0.14), so ``rms`` also needs the data to agree:
    the leave-one-out NRMSE at or below the target too.
    """

    target: float
    statistic: Literal["rms", "max"] = "rms"
    name: str = "target_std"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires on the latest retraining's ``mean_rel_std`` (RMS) or ``max_rel_std``."""
        if state.step is None:
            return None
        values = np.asarray(
            state.step.max_rel_std if self.statistic == "max" else state.step.mean_rel_std
        )
        if not np.all(values <= self.target):
            return None
        if self.statistic == "max":
            return StopDecision(
                self.name,
                f"uncertainty target met: max relative std {float(np.max(values)):.4g} <= "
                f"{self.target:g} for every output (n = {state.step.n})",
            )
        loo = np.asarray(state.step.loo_nrmse)
        if not np.all(loo <= self.target):
            return None
        return StopDecision(
            self.name,
            f"uncertainty target met: RMS relative std {float(np.max(values)):.4g} and LOO "
            f"NRMSE {float(np.max(loo)):.4g} <= {self.target:g} for every output "
            f"(n = {state.step.n})",
        )


def _settled(screening: Mapping[str, float], target: float) -> bool:
    """Labels flipped since the previous retraining: no more than ``1 - target`` of the pool."""
    return screening.get("changed", 1.0) <= 1.0 - target


@dataclass(frozen=True)
class ScreeningConfidence(_Composable):
    """Stop when every unsimulated candidate's class is known with at least ``target``.

    Like :class:`ScreeningAccuracy`, it also needs the labels to have settled: at most
    ``1 - target`` of the pool changed class since the previous retraining.
    """

    target: float
    name: str = "screening_confidence"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires on the latest screening's least confidence over the pool."""
        s = state.screening
        if s is None or s["min_confidence"] < self.target or not _settled(s, self.target):
            return None
        return StopDecision(
            self.name,
            f"screening done: every candidate's class known with P >= "
            f"{s['min_confidence']:.4g} >= {self.target:g}; {int(s['n_pass'])} pass "
            f"(n = {state.ok})",
        )


@dataclass(frozen=True)
class ScreeningAccuracy(_Composable):
    """Stop when the pool's expected fraction of correct labels reaches ``target``.

    The model's own confidence can be wrong early (a basin it has not seen), so the rule also
    needs the labels to have settled: at most ``1 - target`` of the pool changed class since
    the previous retraining.
    """

    target: float
    name: str = "screening_accuracy"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires on the latest screening's mean class confidence over the pool."""
        s = state.screening
        if s is None or s["expected_accuracy"] < self.target or not _settled(s, self.target):
            return None
        return StopDecision(
            self.name,
            f"screening done: {100 * s['expected_accuracy']:.2f} % of the pool expected "
            f"labelled correctly >= {100 * self.target:g} %; {int(s['n_pass'])} pass "
            f"(n = {state.ok})",
        )


@dataclass(frozen=True)
class TargetLooNrmse(_Composable):
    """Stop when every output's leave-one-out NRMSE <= target."""

    target: float
    min_points: int = 8
    name: str = "target_loo_nrmse"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires on the latest retraining's ``loo_nrmse`` (once ``min_points`` are fitted)."""
        step = state.step
        if step is None or step.n < self.min_points:
            return None
        if not np.all(np.asarray(step.loo_nrmse) <= self.target):
            return None
        worst = float(np.max(step.loo_nrmse))
        return StopDecision(
            self.name,
            f"LOO error target met: NRMSE {worst:.4g} <= {self.target:g} for every output "
            f"(n = {step.n})",
        )


@dataclass(frozen=True)
class MaxFailureRate(_Composable):
    """Stop when more than ``rate`` of finished simulations failed, after ``after`` finished."""

    rate: float = 0.5
    after: int = 10
    name: str = "max_failure_rate"

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """Fires with the commonest error messages in the reason."""
        if state.finished < self.after or state.failed <= self.rate * state.finished:
            return None
        common = Counter(e.splitlines()[0][:120] for e in state.errors if e).most_common(2)
        what = "; ".join(f"{n}x {msg}" for msg, n in common) or "no error text"
        return StopDecision(
            self.name,
            f"{state.failed} of {state.finished} simulations failed (> {self.rate:.0%}); "
            f"commonest: {what}",
        )


class AnyRule(_Composable):
    """Stops on the first of its rules that holds."""

    name = "any"

    def __init__(self, rules: Sequence[StopRule]) -> None:
        flat: list[StopRule] = []
        for rule in rules:
            flat.extend(rule.rules if isinstance(rule, AnyRule) else [rule])
        self.rules: list[StopRule] = flat

    def __call__(self, state: CampaignState) -> StopDecision | None:
        """The first decision among the rules, in order."""
        for rule in self.rules:
            decision = rule(state)
            if decision is not None:
                return decision
        return None
