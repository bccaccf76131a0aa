"""Batch-system Dask clusters (dask-jobqueue) from a spec's ``[execution.cluster]``.

emucamp never writes its own scheduler: the cluster is dask-jobqueue's ``SLURMCluster``,
``PBSCluster`` or ``LSFCluster``, built from the spec and scaled adaptively by Dask. This
module previews what would be submitted, without submitting anything.

Example:
    >>> print(job_script(load_spec("campaign.toml")))
    #!/usr/bin/env bash
    #SBATCH -J dask-worker
    #SBATCH -p compute
    ...
"""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from emucamp.errors import SpecError
from emucamp.spec import CampaignSpec

__all__ = ["api_prologue", "cluster_class", "job_name", "job_script"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def cluster_class(spec: CampaignSpec) -> Any:
    """The dask-jobqueue class of the spec's ``[execution.cluster]``.

    Raises:
        SpecError: the spec has no cluster, or dask-jobqueue is not installed.
    """
    section = spec.execution.cluster
    if section is None:
        raise SpecError("execution.cluster: not set in this spec")
    module, _, name = section.cluster_class.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise SpecError(
            "execution.cluster needs dask-jobqueue: pip install 'emucamp[cluster]'"
        ) from None


def job_name(spec: CampaignSpec) -> str:
    """``emucamp-<campaign>``, what the batch jobs are called (a safe slug)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", spec.campaign.name).strip("-")[:40]
    return f"emucamp-{slug or 'campaign'}"


def api_prologue(api_url: str) -> list[str]:
    """Job-script lines that point the batch workers at the campaign's Prefect API.

    Raises:
        SpecError: ``api_url`` is a loopback address, which compute nodes cannot reach.
    """
    host = urlparse(api_url).hostname or ""
    if not host or host in _LOOPBACK:
        raise SpecError(
            f"execution.cluster: batch jobs cannot reach the Prefect API at "
            f"{api_url or '(none set)'}; start a server they can reach "
            "(prefect server start --host 0.0.0.0) and set "
            "PREFECT_API_URL=http://<this host>:4200/api"
        )
    return [f"export PREFECT_API_URL={shlex.quote(api_url)}"]


def job_script(spec: CampaignSpec, prologue: Sequence[str] = ()) -> str:
    """The batch script dask-jobqueue would submit for each job (nothing is submitted).

    A throwaway scheduler on 127.0.0.1 stands in for the real one, so the worker command's
    scheduler address differs from a real run's; every other line is what a run submits.

    Args:
        spec: A spec with ``[execution.cluster]``.
        prologue: Lines before the spec's own prologue (a run adds ``export PREFECT_API_URL``).
    """
    cls = cluster_class(spec)
    assert spec.execution.cluster is not None
    kwargs = spec.execution.cluster.cluster_kwargs(prologue, job_name(spec))
    options = {"host": "127.0.0.1", "dashboard_address": None}
    with cls(**kwargs, scheduler_options=options) as cluster:
        return str(cluster.job_script())
