from __future__ import annotations

import numpy as np

from emucamp.emulators.stopping import (
    AnyRule,
    CampaignState,
    MaxFailureRate,
    MaxHours,
    MaxSimulations,
    ScreeningAccuracy,
    ScreeningConfidence,
    TargetLooNrmse,
    TargetStd,
)
from emucamp.storage import StepRecord


def step(max_rel_std, loo=(0.5, 0.5), n=20) -> StepRecord:
    m = len(max_rel_std)
    return StepRecord(
        n=n,
        time=0.0,
        fit_seconds=0.1,
        max_rel_std=np.array(max_rel_std),
        mean_rel_std=np.array(max_rel_std) / 2,
        loo_nrmse=np.array(loo),
        loo_coverage=np.ones(m),
        lengthscales=np.ones((m, 2)),
    )


def test_max_simulations_fires_at_the_budget():
    rule = MaxSimulations(10)
    assert rule(CampaignState(finished=9)) is None
    decision = rule(CampaignState(finished=10))
    assert decision is not None and decision.rule == "max_simulations" and "10" in decision.reason


def test_target_std_needs_every_output_below_target():
    rule = TargetStd(0.05, "max")
    assert rule(CampaignState()) is None  # no emulator yet
    assert rule(CampaignState(step=step([0.04, 0.06]))) is None
    decision = rule(CampaignState(step=step([0.04, 0.049])))
    assert decision is not None and "0.049" in decision.reason and "n = 20" in decision.reason


def test_target_std_bounds_the_rms_by_default_and_the_max_on_request():
    # The RMS over the reference set is half the max in these records.
    at = CampaignState(step=step([0.08, 0.09], loo=(0.03, 0.04)))
    decision = TargetStd(0.05)(at)
    assert decision is not None and "RMS relative std 0.045" in decision.reason
    assert "LOO NRMSE 0.04" in decision.reason
    assert TargetStd(0.05, "max")(at) is None


def test_target_std_on_the_rms_waits_for_the_loo_error_to_agree():
    # Sure of itself and wrong: small posterior std, large leave-one-out error.
    assert TargetStd(0.05)(CampaignState(step=step([0.08, 0.09], loo=(0.03, 0.14)))) is None


def test_target_loo_nrmse_waits_for_enough_points():
    rule = TargetLooNrmse(0.01, min_points=8)
    assert rule(CampaignState(step=step([1, 1], loo=(0.001, 0.001), n=5))) is None
    assert rule(CampaignState(step=step([1, 1], loo=(0.001, 0.02)))) is None
    assert rule(CampaignState(step=step([1, 1], loo=(0.001, 0.009)))) is not None


def test_max_hours_uses_elapsed_time():
    assert MaxHours(0.5)(CampaignState(elapsed_seconds=1799)) is None
    assert MaxHours(0.5)(CampaignState(elapsed_seconds=1800)) is not None


def test_failure_rate_reports_the_commonest_errors():
    rule = MaxFailureRate(0.5, after=10)
    errors = ["ValueError: bad mesh"] * 5 + ["TimeoutError: slow"] * 2
    assert rule(CampaignState(finished=9, failed=7, errors=errors)) is None  # too early
    assert rule(CampaignState(finished=14, failed=7, errors=errors)) is None  # exactly half
    decision = rule(CampaignState(finished=12, failed=7, errors=errors))
    assert decision is not None
    assert "7 of 12" in decision.reason and "5x ValueError: bad mesh" in decision.reason


def test_rules_compose_and_the_first_that_holds_wins():
    rules = MaxSimulations(100) | TargetStd(0.1) | MaxHours(1)
    assert isinstance(rules, AnyRule) and len(rules.rules) == 3
    state = CampaignState(finished=100, step=step([0.01, 0.01], loo=(0.05, 0.05)))
    decision = rules(state)
    assert decision is not None and decision.rule == "max_simulations"
    state.finished = 50
    decision = rules(state)
    assert decision is not None and decision.rule == "target_std"
    state.step = step([0.5, 0.5])
    assert rules(state) is None


def test_screening_rules_read_the_latest_pool_summary():
    summary = {"min_confidence": 0.97, "expected_accuracy": 0.996, "n_pass": 120.0, "changed": 0.0}
    state = CampaignState(finished=60, ok=60, screening=summary)
    assert ScreeningConfidence(0.99)(state) is None  # one candidate is still 97 % sure
    assert ScreeningConfidence(0.95)(state).rule == "screening_confidence"  # type: ignore[union-attr]
    decision = ScreeningAccuracy(0.995)(state)
    assert decision is not None and "99.60 % of the pool" in decision.reason
    assert "120 pass" in decision.reason
    assert ScreeningAccuracy(0.999)(state) is None
    assert ScreeningAccuracy(0.6)(CampaignState()) is None  # no screening yet
    unsettled = CampaignState(ok=60, screening={**summary, "changed": 0.1})
    assert ScreeningAccuracy(0.995)(unsettled) is None  # 10 % of labels just flipped
    assert ScreeningConfidence(0.95)(unsettled) is None
