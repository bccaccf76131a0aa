"""emucamp: active-learning emulation campaigns.

A Gaussian-process emulator picks the most informative simulations, Dask runs them,
a Zarr store keeps every result, and the emulator retrains until its uncertainty target
is met. The library is engine-free; ``emucamp.flows`` runs the same loop as a Prefect flow.

Example:
    >>> import emucamp
    >>> emu = emucamp.load_emulator("runs/borehole.zarr")
    >>> table = emu.predict(pandas.read_csv("inputs.csv"))   # <output>_mean, <output>_std
"""

from __future__ import annotations

import importlib
from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# In a source checkout the card folders (emulators/, storage/, tasks/, flows/) sit beside
# this folder, and a shell in the checkout puts it first on sys.path, hiding the installed
# mapping of those folders into emucamp.*; searching the checkout root too keeps
# `import emucamp.storage` working there. Installed, they live inside this package.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "storage" / "store.py").is_file():
    __path__.append(str(_root))

# Public names, imported on first use: `import emucamp` (and the CLI's `status`) stays
# fast because torch and BoTorch load only when an emulator is needed.
_EXPORTS = {
    "Campaign": "emucamp.campaign",
    "CampaignObserver": "emucamp.observer",
    "CampaignOutcome": "emucamp.observer",
    "CampaignSpec": "emucamp.spec",
    "CampaignStore": "emucamp.storage",
    "CommandSimulator": "emucamp.simulator",
    "DaskExecutor": "emucamp.executors",
    "EmucampError": "emucamp.errors",
    "GPEmulator": "emucamp.emulators.gp",
    "Parameter": "emucamp.space",
    "PoolExecutor": "emucamp.executors",
    "PythonSimulator": "emucamp.simulator",
    "SimJob": "emucamp.simulator",
    "SimResult": "emucamp.simulator",
    "SimulatorError": "emucamp.errors",
    "Space": "emucamp.space",
    "SpecError": "emucamp.errors",
    "StoreError": "emucamp.errors",
    "load_emulator": "emucamp.emulators.gp",
    "load_spec": "emucamp.spec",
    "parse_spec": "emucamp.spec",
}
__all__ = [
    "Campaign",
    "CampaignObserver",
    "CampaignOutcome",
    "CampaignSpec",
    "CampaignStore",
    "CommandSimulator",
    "DaskExecutor",
    "EmucampError",
    "GPEmulator",
    "Parameter",
    "PoolExecutor",
    "PythonSimulator",
    "SimJob",
    "SimResult",
    "SimulatorError",
    "Space",
    "SpecError",
    "StoreError",
    "load_emulator",
    "load_spec",
    "parse_spec",
]

if TYPE_CHECKING:
    from emucamp.campaign import Campaign
    from emucamp.emulators.gp import GPEmulator, load_emulator
    from emucamp.errors import EmucampError, SimulatorError, SpecError, StoreError
    from emucamp.executors import DaskExecutor, PoolExecutor
    from emucamp.observer import CampaignObserver, CampaignOutcome
    from emucamp.simulator import CommandSimulator, PythonSimulator, SimJob, SimResult
    from emucamp.space import Parameter, Space
    from emucamp.spec import CampaignSpec, load_spec, parse_spec
    from emucamp.storage import CampaignStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emucamp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
