"""Write to a campaign store as fast as possible until killed (for the crash tests).

    python store_writer.py STORE

Each round appends two pending rows, records them as ok with outputs ``u = 2 id``,
``v = -id``, and every fifth round appends a step and replaces the saved emulator.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from emucamp.simulator import SimResult
from emucamp.storage import CampaignStore, EmulatorState, StepRecord


def main(path: Path) -> None:
    store, _ = CampaignStore.open_or_create(path, ["a", "b"], ["u", "v"])
    rounds = 0
    while True:
        ids = store.add_pending(np.random.default_rng(rounds).random((2, 2)), rounds, "test")
        now = time.time()
        store.record_many(
            [
                SimResult(i, {}, {"u": 2.0 * i, "v": -float(i)}, started_at=now, finished_at=now)
                for i in ids
            ]
        )
        if rounds % 5 == 0:
            n = store.n_samples
            store.add_step(
                StepRecord(n, now, 0.1, *(np.full(2, 0.5),) * 4, np.ones((2, 2)))  # type: ignore[arg-type]
            )
            store.save_emulator(
                EmulatorState(np.zeros((n, 2)), np.ones((n, 2)), {"w": np.arange(n)}, {"n": n})
            )
        rounds += 1
        if rounds == 1:
            print("writing", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
