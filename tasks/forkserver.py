"""Imported last by the embedded cluster's fork server: freezes what it imported.

Forked workers share the fork server's memory until they write to it. Python's cyclic
garbage collector writes to every object it scans, so each worker's first full
collections would copy the imported modules' pages; ``gc.freeze`` moves them out of the
collector's reach first. Only the fork server imports this module.
"""

from __future__ import annotations

import gc

gc.freeze()
