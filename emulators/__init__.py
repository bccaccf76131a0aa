"""Emulators, selection strategies, stopping rules and diagnostics (engine-free)."""

from __future__ import annotations
