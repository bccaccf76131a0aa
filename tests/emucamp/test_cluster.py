"""`[execution.cluster]`: the batch scripts dask-jobqueue builds from a spec (nothing submitted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emucamp.cli import app
from emucamp.cluster import api_prologue, job_script
from emucamp.errors import SpecError
from emucamp.spec import parse_spec


def spec_with(cluster: dict[str, Any], **execution: Any) -> Any:
    return parse_spec({
        "campaign": {"name": "borehole.v2"},
        "simulator": {"function": "emucamp.testfunctions:branin"},
        "parameters": {"x1": {"low": -5, "high": 10}, "x2": {"low": 0, "high": 15}},
        "outputs": {"y": {}},
        "execution": {"workers": 12, "cluster": cluster, **execution},
    })  # fmt: skip


SETTINGS = {
    "cores": 4,
    "memory": "16GB",
    "walltime": "03:15:00",
    "queue": "compute",
    "account": "proj42",
    "job_extra_directives": ["--constraint=skylake"],
    "job_script_prologue": ["module load python/3.11"],
}

# What each batch system's directives look like for SETTINGS (dask-jobqueue's own syntax).
EXPECTED = {
    "slurm": ["#SBATCH -J emucamp-borehole-v2", "#SBATCH -p compute", "#SBATCH -A proj42",
              "#SBATCH --cpus-per-task=4", "#SBATCH --mem=15G", "#SBATCH -t 03:15:00",
              "#SBATCH --constraint=skylake"],
    "pbs": ["#PBS -N emucamp-borehole-v2", "#PBS -q compute", "#PBS -A proj42",
            "#PBS -l select=1:ncpus=4:mem=", "#PBS -l walltime=03:15:00",
            "#PBS --constraint=skylake"],
    "lsf": ["#BSUB -J emucamp-borehole-v2", "#BSUB -q compute", '#BSUB -P "proj42"',
            "#BSUB -n 4", "#BSUB -W 03:15", "#BSUB --constraint=skylake"],
}  # fmt: skip


@pytest.mark.parametrize("kind", ["slurm", "pbs", "lsf"])
def test_job_script_carries_the_spec_settings(kind):
    spec = spec_with({"kind": kind, **SETTINGS})
    script = job_script(spec, api_prologue("http://login1.cluster:4200/api"))
    for line in EXPECTED[kind]:
        assert line in script, (line, script)
    lines = script.splitlines()
    # The API export comes first, then the user's prologue, then the worker itself.
    export = lines.index("export PREFECT_API_URL=http://login1.cluster:4200/api")
    module = lines.index("module load python/3.11")
    worker = next(i for i, line in enumerate(lines) if "dask_worker" in line)
    assert export < module < worker
    assert "--nthreads 4" in lines[worker]  # 4 simulations at a time per job


def test_processes_split_a_job_into_worker_processes():
    script = job_script(spec_with({"kind": "slurm", "cores": 4, "processes": 2}))
    worker = next(line for line in script.splitlines() if "dask_worker" in line)
    assert "--nthreads 2" in worker and "--nworkers 2" in worker


def test_adaptive_bounds_default_to_the_simulations_in_flight():
    section = spec_with({"kind": "slurm", "cores": 4}).execution.cluster
    assert section.adapt_kwargs(12) == {"minimum_jobs": 0, "maximum_jobs": 3}
    assert section.adapt_kwargs(13) == {"minimum_jobs": 0, "maximum_jobs": 4}
    section = spec_with({"kind": "pbs", "min_jobs": 2, "max_jobs": 5}).execution.cluster
    assert section.adapt_kwargs(12) == {"minimum_jobs": 2, "maximum_jobs": 5}


@pytest.mark.parametrize(
    ("cluster", "execution", "message"),
    [
        ({"kind": "sge"}, {}, "execution.cluster.kind"),
        ({"kind": "slurm", "walltime": "2 hours"}, {}, "execution.cluster.walltime"),
        ({"kind": "slurm", "memory": "lots"}, {}, "execution.cluster.memory"),
        ({"kind": "slurm", "cores": 3, "processes": 2}, {}, "multiple of processes"),
        ({"kind": "slurm", "min_jobs": 4, "max_jobs": 2}, {}, "below min_jobs"),
        ({"kind": "slurm", "partition": "x"}, {}, "execution.cluster.partition"),
        ({"kind": "slurm"}, {"address": "tcp://10.0.0.1:8786"}, "either address"),
    ],
)
def test_bad_cluster_settings_name_the_field(cluster, execution, message):
    with pytest.raises(SpecError, match=message):
        spec_with(cluster, **execution)


@pytest.mark.parametrize("url", ["http://127.0.0.1:4200/api", "http://localhost:4200/api", ""])
def test_batch_jobs_need_an_api_they_can_reach(url):
    with pytest.raises(SpecError, match="cannot reach the Prefect API"):
        api_prologue(url)


def test_validate_prints_the_job_script_alone_on_stdout(tmp_path: Path):
    (tmp_path / "c.toml").write_text(
        '[campaign]\nname = "c"\n[simulator]\nfunction = "emucamp.testfunctions:branin"\n'
        "[parameters]\nx1 = { low = -5, high = 10 }\nx2 = { low = 0, high = 15 }\n"
        '[outputs]\ny = {}\n[execution.cluster]\nkind = "slurm"\nqueue = "debug"\n'
    )
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "c.toml"), "--job-script"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("#!/usr/bin/env bash")
    assert "#SBATCH -p debug" in result.stdout and "ok" not in result.stdout
    assert "ok" in result.stderr
