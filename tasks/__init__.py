"""Prefect tasks: thin wrappers over the engine-free library."""

from __future__ import annotations

from emucamp.tasks.simulate import SimulationFailed, simulate, simulate_pack

__all__ = ["SimulationFailed", "simulate", "simulate_pack"]
