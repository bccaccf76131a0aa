"""Write candidates.csv: every Cu-Ag-Au-Pd composition of a 32-atom fcc cell (6,545 rows).

python examples/alloys/make_pool.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from alloy_emt import ATOMS, formula

rows = []
for ag, au, pd_ in itertools.product(range(ATOMS + 1), repeat=3):
    if ag + au + pd_ <= ATOMS:
        counts = {"Cu": ATOMS - ag - au - pd_, "Ag": ag, "Au": au, "Pd": pd_}
        rows.append({"formula": formula(counts), "x_ag": ag / ATOMS, "x_au": au / ATOMS,
                     "x_pd": pd_ / ATOMS})  # fmt: skip
pd.DataFrame(rows).to_csv(Path(__file__).with_name("candidates.csv"), index=False)
print(f"{len(rows)} candidates")
