"""Formation energy of an fcc Cu-Ag-Au-Pd alloy from ASE's EMT potential, after relaxation.

A 32-atom supercell (2 x 2 x 2 conventional fcc cells) gets the composition's atoms in a
random arrangement (seeded by the composition, so a rerun gives the same structure); atom
positions and the cell are relaxed with BFGS; the formation energy per atom is taken against
the relaxed pure elements. Runs in about a second; needs ``ase`` (``pip install emucamp[alloys]``).
"""

from __future__ import annotations

import functools

import numpy as np

ELEMENTS = ("Cu", "Ag", "Au", "Pd")
ATOMS = 32
# fcc lattice constants (Angstrom) to start from; EMT relaxes to its own.
LATTICE = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Pd": 3.89}


def counts_of(x_ag: float, x_au: float, x_pd: float) -> dict[str, int]:
    """Atoms of each element in the cell for the given fractions (Cu takes the rest)."""
    n = {"Ag": round(x_ag * ATOMS), "Au": round(x_au * ATOMS), "Pd": round(x_pd * ATOMS)}
    n["Cu"] = ATOMS - sum(n.values())
    if n["Cu"] < 0 or min(n.values()) < 0:
        raise ValueError(f"fractions Ag {x_ag}, Au {x_au}, Pd {x_pd} do not fit in one cell")
    return n


def _relaxed_energy(atoms) -> float:  # type: ignore[no-untyped-def]
    from ase.calculators.emt import EMT
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.02, steps=300)
    return float(atoms.get_potential_energy())


@functools.cache
def pure_energy(element: str) -> float:
    """Relaxed EMT energy per atom of the pure fcc element."""
    from ase.build import bulk

    return _relaxed_energy(bulk(element, "fcc", a=LATTICE[element], cubic=True)) / 4


def formation_energy(x_ag: float, x_au: float, x_pd: float) -> dict[str, float]:
    """Relax the alloy; return its formation energy (eV/atom) and relaxed lattice constant."""
    from ase.build import bulk

    n = counts_of(x_ag, x_au, x_pd)
    a0 = sum(LATTICE[e] * k for e, k in n.items()) / ATOMS  # Vegard's law to start
    atoms = bulk("Cu", "fcc", a=a0, cubic=True).repeat((2, 2, 2))
    symbols = [e for e in ELEMENTS for _ in range(n[e])]
    seed = int(1e6 * (x_ag + 10 * x_au + 100 * x_pd)) % 2**32
    atoms.set_chemical_symbols(list(np.random.default_rng(seed).permutation(symbols)))
    energy = _relaxed_energy(atoms)
    reference = sum(k * pure_energy(e) for e, k in n.items())
    lattice = (atoms.get_volume() / ATOMS * 4) ** (1 / 3)
    return {"formation_energy": (energy - reference) / ATOMS, "lattice": float(lattice)}


def formula(counts: dict[str, int]) -> str:
    """``Cu20Ag4Au6Pd2``-style name of a composition."""
    return "".join(f"{e}{counts[e]}" for e in ELEMENTS if counts[e])


if __name__ == "__main__":
    print(formation_energy(0.25, 0.25, 0.0))
