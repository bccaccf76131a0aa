"""Prefect flows: the campaign loop as a flow run, simulations as tasks on Dask."""

from __future__ import annotations

from emucamp.flows.campaign import (
    campaign_flow,
    prefect_api,
    run_campaign,
    run_spec,
    task_runner_for,
)

__all__ = ["campaign_flow", "prefect_api", "run_campaign", "run_spec", "task_runner_for"]
