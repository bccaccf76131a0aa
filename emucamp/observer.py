"""What a campaign tells the outside world: the hooks its loop calls, and how a run ended.

Kept apart from :mod:`emucamp.campaign` so that code which only watches a campaign (the
Prefect flow module, which every Dask worker imports to run a task) does not import the
emulator stack (torch, BoTorch: seconds per process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emucamp.campaign import Campaign
    from emucamp.simulator import SimJob, SimResult
    from emucamp.storage import StepRecord

__all__ = ["CampaignObserver", "CampaignOutcome"]


@dataclass
class CampaignOutcome:
    """How a run of a campaign ended.

    Attributes:
        rule: Name of the stop rule that fired (``""`` if interrupted).
        reason: One-line reason.
        store: Path of the campaign store.
        counts: Samples per status.
        steps: Retraining steps recorded in total.
        latest: Latest retraining diagnostics, if any.
        simulated: Simulations finished in this run.
    """

    rule: str
    reason: str
    store: str
    counts: dict[str, int]
    steps: int
    latest: StepRecord | None = None
    simulated: int = 0


class CampaignObserver:
    """Hooks the loop calls as things happen; subclass and override what you need.

    The CLI prints from these, the Prefect flow updates its artifacts from them. They run
    in the loop's thread: keep them quick.
    """

    def on_start(self, campaign: Campaign) -> None:
        """The loop is about to submit its first simulation."""

    def on_submit(self, jobs: list[SimJob], campaign: Campaign) -> None:
        """Jobs were submitted."""

    def on_result(self, result: SimResult, campaign: Campaign) -> None:
        """A simulation finished and was recorded."""

    def on_step(self, step: StepRecord, campaign: Campaign) -> None:
        """A retraining finished and its diagnostics were recorded."""

    def on_stop(self, outcome: CampaignOutcome, campaign: Campaign) -> None:
        """The campaign stopped."""
