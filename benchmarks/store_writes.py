"""Cost of the loop's store writes, alone and while other threads keep the GIL busy.

The campaign loop writes every new pick (``add_pending``) and every burst of results
(``record_many``) from its own thread, while a GP fit, the Dask client and Prefect's client
run in threads of the same process. This times both writes on a fresh store: alone, then
with ``--busy`` threads spinning in pure Python (the worst case for the GIL: each holds it
for a whole switch interval, 5 ms by default).

    python benchmarks/store_writes.py --busy 2 --rows 52 --results 26 --repeats 6
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from emucamp.simulator import SimResult
from emucamp.storage import CampaignStore


def spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def timed_writes(folder: Path, rows: int, results: int, repeats: int) -> tuple[float, float]:
    """Median seconds of ``add_pending(rows)`` and ``record_many(results)`` on a new store."""
    rng = np.random.default_rng(0)
    pending, recorded = [], []
    with CampaignStore.create(folder / "s.zarr", ["x1", "x2", "x3"], ["y"]) as store:
        for it in range(repeats):
            start = time.perf_counter()
            ids = store.add_pending(rng.random((rows, 3)), iteration=it, origin="max-variance")
            pending.append(time.perf_counter() - start)
            now = time.time()
            batch = [
                SimResult(i, {}, {"y": 1.0}, started_at=now, finished_at=now, worker="w")
                for i in ids[:results]
            ]
            start = time.perf_counter()
            store.record_many(batch)
            recorded.append(time.perf_counter() - start)
    return float(np.median(pending)), float(np.median(recorded))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rows", type=int, default=52)
    parser.add_argument("--results", type=int, default=26)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    print(f"| busy threads | add_pending({args.rows}) ms | record_many({args.results}) ms |")
    print("|---|---|---|")
    for busy in args.busy:
        stop = threading.Event()
        threads = [threading.Thread(target=spin, args=(stop,)) for _ in range(busy)]
        for t in threads:
            t.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                pending, recorded = timed_writes(Path(tmp), args.rows, args.results, args.repeats)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print(f"| {busy} | {pending * 1e3:.1f} | {recorded * 1e3:.1f} |")


if __name__ == "__main__":
    main()
