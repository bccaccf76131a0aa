"""``python -m emucamp`` runs the CLI."""

from __future__ import annotations

from emucamp.cli import main

main()
