"""The emucamp error hierarchy: one base class, one subclass per kind of problem."""

from __future__ import annotations

__all__ = [
    "EmucampError",
    "SimulatorError",
    "SpecError",
    "StoreError",
    "StoreLockedError",
]


class EmucampError(Exception):
    """Base class of every error emucamp raises on purpose.

    The CLI prints these as one line and exits with code 2.
    """


class SpecError(EmucampError, ValueError):
    """A campaign spec is malformed: the message names the field and the value."""


class StoreError(EmucampError):
    """A campaign store is missing, unreadable, or does not match the spec."""


class StoreLockedError(StoreError):
    """Another live process is writing to the campaign store."""


class SimulatorError(EmucampError):
    """A simulator cannot be loaded (bad import path, not callable, bad template)."""
