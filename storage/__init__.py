"""The campaign store: one Zarr v3 group that is the whole state of a campaign."""

from __future__ import annotations

from emucamp.storage.lock import StoreLock
from emucamp.storage.store import SCHEMA_VERSION, CampaignStore, EmulatorState, StepRecord

__all__ = ["SCHEMA_VERSION", "CampaignStore", "EmulatorState", "StepRecord", "StoreLock"]
