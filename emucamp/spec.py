"""The campaign spec: one validated model, read from TOML or YAML or built in Python.

Every key is checked before anything runs. A bad spec raises :class:`SpecError` with one
line naming the field and the value, e.g. ``stop.max_simulations: must be > 0 (got -5)``.
"""

from __future__ import annotations

import keyword
import math
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from emucamp.errors import SpecError
from emucamp.space import Parameter, Space

__all__ = [
    "CampaignSection",
    "CampaignSpec",
    "DesignSection",
    "ExecutionSection",
    "GoalSection",
    "OutputSpec",
    "ParameterSpec",
    "PoolSection",
    "SimulatorSection",
    "StopSection",
    "load_spec",
]

StrategyName = Literal["integrated-variance", "max-variance", "sobol", "straddle", "random"]
POOL_STRATEGIES = ("straddle", "max-variance", "random")

# Names the store uses for its own variables: a parameter or output may not take them.
RESERVED_NAMES = frozenset(
    {
        "sample", "status", "error", "iteration", "origin", "submitted_at", "started_at",
        "finished_at", "worker", "attempt", "step", "output", "parameter", "extra",
        "candidate", "ood", "ood_distance",
    }
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class CampaignSection(_Section):
    """``[campaign]``: what the campaign is called and where its store lives."""

    name: str = Field(description="Campaign name: names the flow run and the default store.")
    store: str | None = Field(
        default=None,
        description="Store path; default runs/<name>.zarr. Relative paths are relative "
        "to the spec file's folder.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of designs and acquisitions.")

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", v):
            raise ValueError(
                "must be 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        return v


class SimulatorSection(_Section):
    """``[simulator]``: a Python callable (``function``) or an external program (``command``)."""

    function: str | None = Field(default=None, description="Import path 'package.module:func'.")
    command: list[str] | None = Field(default=None, description="argv template, no shell.")
    workdir: str | None = Field(
        default=None, description="Where command runs get their work folders; default <store>.work."
    )
    timeout: float = Field(default=3600.0, gt=0, description="Seconds per simulation.")
    retries: int = Field(default=0, ge=0, le=100, description="Re-runs of a failed simulation.")
    isolate: bool = Field(
        default=False,
        description="Run each call of 'function' in its own subprocess, killed at 'timeout' "
        "(for Python code that may hang or crash the interpreter).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SimulatorSection:
        if (self.function is None) == (self.command is None):
            raise ValueError("give exactly one of 'function' or 'command'")
        if self.function is not None and not re.fullmatch(
            r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", self.function
        ):
            raise ValueError(
                f"function {self.function!r} is not an import path like 'package.module:function'"
            )
        if self.command is not None and (not self.command or not self.command[0].strip()):
            raise ValueError("command must name a program")
        if self.workdir is not None:
            parts = Path(self.workdir).parts
            if Path(self.workdir).is_absolute() or ".." in parts or not parts:
                raise ValueError(
                    f"workdir {self.workdir!r} must be a folder inside the campaign's folder "
                    "(a relative path without '..')"
                )
        if self.isolate and self.command is not None:
            raise ValueError("isolate applies to 'function'; a command runs in its own process")
        return self


class ParameterSpec(_Section):
    """One ``[parameters]`` entry: ``{ low = ..., high = ..., log = false }``.

    With a ``[pool]``, ``low`` and ``high`` may be left out: they are the pool's range.
    """

    low: float | None = None
    high: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> ParameterSpec:
        for which, value in (("low", self.low), ("high", self.high)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"bounds must be finite (got {which} = {value})")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (got low = {self.low:g})")
        return self


class OutputSpec(_Section):
    """One ``[outputs]`` entry; ``{}`` for a scalar output the emulator learns."""

    positive: bool = Field(
        default=False,
        description="Always > 0 (a time, a concentration, a resistance): the GP models its "
        "log, so predictions stay positive and spans of decades are handled.",
    )
    shape: list[int] | None = Field(
        default=None,
        description="A field output (a curve, a profile): the shape of the array the simulator "
        "returns, e.g. [100]. Emulated through its leading principal components.",
    )
    retained_variance: float = Field(
        default=0.999,
        gt=0,
        le=1,
        description="Fraction of a field's variance its principal components must keep.",
    )
    max_components: int = Field(
        default=16, ge=1, le=256, description="At most this many components per field."
    )

    @model_validator(mode="after")
    def _field(self) -> OutputSpec:
        if self.shape is None:
            # Compared with the defaults, not the keys given: a dumped spec carries every key.
            if self.retained_variance != 0.999 or self.max_components != 16:
                raise ValueError("retained_variance and max_components apply to a field (shape)")
            return self
        if not self.shape or any(k < 1 for k in self.shape) or math.prod(self.shape) > 1_000_000:
            raise ValueError(
                f"shape must list positive sizes of at most 1,000,000 values (got {self.shape})"
            )
        if self.positive:
            raise ValueError("positive applies to a scalar output, not a field (shape)")
        return self

    @property
    def size(self) -> int:
        """Values per simulation: 1 for a scalar output."""
        return math.prod(self.shape) if self.shape else 1


class EmulatorSection(_Section):
    """``[emulator]``: a physics prior mean (grey box) and the out-of-distribution guard."""

    prior_mean: str | None = Field(
        default=None,
        description="Import path 'module:function' of a cheap, vectorised physics model: "
        "called with one array of n values per parameter, it returns n values (one output) "
        "or {output: n values}. The GP learns simulation - prior.",
    )
    ood_method: Literal["chi2", "empirical"] = Field(
        default="chi2",
        description="Threshold of the Mahalanobis out-of-distribution flag: a chi quantile, "
        "or a quantile of the training points' own distances.",
    )
    ood_level: float = Field(default=0.999, gt=0, le=1, description="That quantile.")
    noise_floor: float = Field(
        default=1e-6,
        ge=1e-10,
        le=1.0,
        description="Lowest noise variance the GP may infer (standardised units); BoTorch's "
        "1e-4 caps a deterministic simulator's emulator at about 1 % error.",
    )
    priors: Literal["botorch", "none"] = Field(
        default="none",
        description="'none': plain maximum likelihood of a scaled RBF from two starts, as "
        "scikit-learn fits (the default: more accurate with few runs); 'botorch': MAP fit "
        "under BoTorch's lengthscale and noise priors.",
    )
    kernel: Literal["rbf", "matern-5/2"] = Field(
        default="rbf",
        description="The GP's kernel, with a lengthscale per input: 'rbf' (smooth functions) "
        "or 'matern-5/2' (rougher ones: wider intervals between runs).",
    )
    max_fit_points: int = Field(
        default=1000,
        ge=10,
        le=1_000_000,
        description="Above this many results, hyperparameters are fitted on a random subset of "
        "this size, then the GP conditions on every result with them (keeps refits of "
        "thousands of runs to seconds).",
    )

    @field_validator("prior_mean")
    @classmethod
    def _prior_mean(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v):
            raise ValueError(f"{v!r} is not an import path like 'module:function'")
        return v

    @model_validator(mode="after")
    def _check(self) -> EmulatorSection:
        if self.ood_method == "chi2" and self.ood_level >= 1:
            raise ValueError("ood_level must be below 1 for ood_method 'chi2'")
        return self


class PoolSection(_Section):
    """``[pool]``: a catalogue of candidates to screen; the campaign selects only from it."""

    path: str = Field(description="CSV, Parquet or Zarr file, one row per candidate.")
    id: str | None = Field(default=None, description="Column of unique candidate ids.")


class GoalSection(_Section):
    """``[goal]``: what screening looks for: a threshold on one output, or its top k."""

    output: str = Field(description="The declared output the goal is about.")
    below: float | None = Field(default=None, description="Pass: output below this value.")
    above: float | None = Field(default=None, description="Pass: output above this value.")
    top_k: int | None = Field(default=None, ge=1, description="Pass: among the k best.")
    top: Literal["smallest", "largest"] = Field(
        default="largest", description="With top_k: which end is best."
    )

    @model_validator(mode="after")
    def _one_goal(self) -> GoalSection:
        given = [k for k in ("below", "above", "top_k") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of below, above or top_k (got {given or 'none'})")
        for k in ("below", "above"):
            value = getattr(self, k)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{k} must be finite (got {value})")
        return self


class DesignSection(_Section):
    """``[design]``: the space-filling start and the selection strategy."""

    initial: int | None = Field(
        default=None, ge=1, description="Initial space-filling points; default max(8, 2d + 2)."
    )
    initial_method: Literal["sobol", "lhs"] = "sobol"
    strategy: StrategyName = Field(
        default="integrated-variance",
        description="How inputs are picked after the initial design (over a [pool], the "
        "default is max-variance).",
    )
    mc_points: int = Field(
        default=1024, ge=16, le=8192, description="Integration points of integrated-variance."
    )
    candidates: int | None = Field(
        default=None,
        ge=16,
        le=65536,
        description="Fresh Sobol candidates per selection of integrated-variance and "
        "max-variance; default 512 d, at least 1,024, for integrated-variance (an 8-D box "
        "needs more than a 2-D one; 1,024 past 1,000 runs) and 1,024 for max-variance.",
    )
    model_lag: float | None = Field(
        default=None,
        gt=0,
        description="While a retraining runs, how many points one model may choose, as a "
        "fraction of the results it was fitted on (never fewer than one per worker), before "
        "idle workers wait for the new model. Default: no limit, workers never wait for a "
        "refit. 0.25 suits simulations faster than a fit, where runs count more than idle time.",
    )


class StopSection(_Section):
    """``[stop]``: the first rule that holds stops the campaign."""

    max_simulations: int = Field(default=100, gt=0)
    target_std: float | None = Field(default=None, gt=0)
    target_std_statistic: Literal["rms", "max"] = Field(
        default="rms",
        description="What target_std bounds: the root mean square of the relative posterior "
        "std over the reference set (the emulator's estimate of its NRMSE), or its max.",
    )
    target_loo_nrmse: float | None = Field(default=None, gt=0)
    max_hours: float | None = Field(default=None, gt=0)
    max_failure_rate: float = Field(default=0.5, gt=0, le=1)
    failure_rate_after: int = Field(default=10, ge=1)
    reference_points: int = Field(
        default=1024, ge=16, le=1_000_000, description="Size of the target_std reference set."
    )
    screening_confidence: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="Stop once every candidate's class (pass or not) is known with this "
        "probability; needs a [goal].",
    )
    screening_accuracy: float | None = Field(
        default=None,
        gt=0.5,
        lt=1,
        description="Stop once the fraction of the pool expected to be labelled correctly "
        "(mean class confidence) reaches this; needs a [goal].",
    )


_WALLTIME = re.compile(r"(\d+:)?\d{1,2}:\d{2}(:\d{2})?")
_MEMORY = re.compile(r"\d+(\.\d+)?\s*([KMGTP]i?B|[KMGTP])", re.IGNORECASE)
JOBQUEUE_CLASSES = {
    "slurm": "dask_jobqueue.SLURMCluster",
    "pbs": "dask_jobqueue.PBSCluster",
    "lsf": "dask_jobqueue.LSFCluster",
}


class ClusterSection(_Section):
    """``[execution.cluster]``: Dask workers as batch jobs (dask-jobqueue), scaled adaptively.

    Each job runs ``processes`` Dask worker processes with ``cores / processes`` threads, so
    one job runs ``cores`` simulations at a time; jobs are submitted and cancelled as the
    campaign's load asks, between ``min_jobs`` and ``max_jobs``.
    """

    kind: Literal["slurm", "pbs", "lsf"] = Field(description="The batch system.")
    cores: int = Field(default=1, ge=1, le=4096, description="Simulations at a time per job.")
    processes: int = Field(default=1, ge=1, le=4096, description="Worker processes per job.")
    memory: str = Field(default="4GB", description="Memory per job, e.g. '4GB', '500MiB'.")
    walltime: str = Field(default="01:00:00", description="Job time limit, 'HH:MM:SS'.")
    queue: str | None = Field(default=None, description="Partition (SLURM) or queue.")
    account: str | None = Field(
        default=None, description="Account (SLURM, PBS) or project (LSF) to charge."
    )
    min_jobs: int = Field(default=0, ge=0, le=100_000)
    max_jobs: int | None = Field(
        default=None, ge=1, le=100_000, description="Default: enough for [execution] workers."
    )
    interface: str | None = Field(
        default=None, description="Network interface scheduler and workers talk on, e.g. 'ib0'."
    )
    job_extra_directives: list[str] = Field(
        default_factory=list, description="More scheduler lines, e.g. ['--gres=gpu:1']."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines run before the worker starts."
    )
    local_directory: str | None = Field(default=None, description="Worker scratch space.")
    log_directory: str | None = Field(default=None, description="Where job logs go.")

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str) -> str:
        if not _WALLTIME.fullmatch(v):
            raise ValueError(f"{v!r} is not a time limit like '02:00:00'")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        if not _MEMORY.fullmatch(v.strip()):
            raise ValueError(f"{v!r} is not a memory size like '4GB' or '500MiB'")
        return v.strip()

    @model_validator(mode="after")
    def _shape(self) -> ClusterSection:
        if self.cores % self.processes:
            raise ValueError(
                f"cores ({self.cores}) must be a multiple of processes ({self.processes})"
            )
        if self.max_jobs is not None and self.max_jobs < self.min_jobs:
            raise ValueError(f"max_jobs ({self.max_jobs}) is below min_jobs ({self.min_jobs})")
        return self

    @property
    def cluster_class(self) -> str:
        """Import path of the dask-jobqueue cluster class."""
        return JOBQUEUE_CLASSES[self.kind]

    def cluster_kwargs(
        self, prologue: Sequence[str] = (), job_name: str | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for the dask-jobqueue cluster class.

        Args:
            prologue: Shell lines put before the spec's own ``job_script_prologue`` (emucamp
                passes ``export PREFECT_API_URL=...``).
            job_name: The batch jobs' name (default: dask-jobqueue's).
        """
        kwargs: dict[str, Any] = {
            "cores": self.cores,
            "processes": self.processes,
            "memory": self.memory,
            "walltime": self.walltime,
            "job_extra_directives": list(self.job_extra_directives),
            "job_script_prologue": [*prologue, *self.job_script_prologue],
        }
        if self.queue is not None:
            kwargs["queue"] = self.queue
        if self.account is not None:
            kwargs["project" if self.kind == "lsf" else "account"] = self.account
        for name in ("interface", "local_directory", "log_directory"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if job_name is not None:
            kwargs["job_name"] = job_name
        return kwargs

    def adapt_kwargs(self, workers: int) -> dict[str, int]:
        """``cluster.adapt`` bounds in jobs; ``workers`` simulations in flight set the default."""
        maximum = self.max_jobs if self.max_jobs is not None else max(1, -(-workers // self.cores))
        return {"minimum_jobs": self.min_jobs, "maximum_jobs": max(maximum, self.min_jobs)}


class ExecutionSection(_Section):
    """``[execution]``: where simulations run."""

    workers: int = Field(default=4, ge=1, le=100_000, description="Tasks in flight.")
    per_task: int | Literal["auto"] = Field(
        default=1,
        description="Simulations run in turn inside one task: an int >= 1, or 'auto' to size "
        "packs from the measured simulation time so orchestration stays near 2 % of it.",
    )
    address: str | None = Field(default=None, description="An existing Dask scheduler.")
    cluster: ClusterSection | None = Field(
        default=None, description="Batch-system workers through dask-jobqueue."
    )
    threads_per_worker: int = Field(default=1, ge=1)
    score_on_workers: bool = Field(
        default=False,
        description="Score a [pool] on the Dask workers after each retraining instead of in "
        "the flow process (for large pools on a cluster).",
    )

    @field_validator("per_task")
    @classmethod
    def _per_task(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 100_000:
            raise ValueError(f"must be between 1 and 100000 or 'auto' (got {v})")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(tcp|tls|ws|wss|inproc|ucx)://\S+", v):
            raise ValueError(f"{v!r} is not a Dask scheduler address like 'tcp://host:8786'")
        return v

    @model_validator(mode="after")
    def _one_cluster(self) -> ExecutionSection:
        if self.address is not None and self.cluster is not None:
            raise ValueError("give either address (an existing scheduler) or [execution.cluster]")
        return self


class CampaignSpec(_Section):
    """A whole campaign: ``[campaign]``, ``[simulator]``, ``[parameters]``, ``[outputs]``, ...

    Example:
        >>> spec = CampaignSpec.model_validate({
        ...     "campaign": {"name": "branin"},
        ...     "simulator": {"function": "emucamp.testfunctions:branin"},
        ...     "parameters": {"x1": {"low": -5, "high": 10}, "x2": {"low": 0, "high": 15}},
        ...     "outputs": {"y": {}},
        ... })
    """

    campaign: CampaignSection
    simulator: SimulatorSection
    parameters: dict[str, ParameterSpec]
    outputs: dict[str, OutputSpec]
    design: DesignSection = DesignSection()
    stop: StopSection = StopSection()
    execution: ExecutionSection = ExecutionSection()
    emulator: EmulatorSection = EmulatorSection()
    pool: PoolSection | None = None
    goal: GoalSection | None = None

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="before")
    @classmethod
    def _default_strategy(cls, data: Any) -> Any:
        """No strategy given: integrated-variance over the box, max-variance over a pool."""
        if isinstance(data, dict):
            design = data.get("design")
            if design is None or (isinstance(design, dict) and "strategy" not in design):
                default = "max-variance" if data.get("pool") is not None else "integrated-variance"
                data = {**data, "design": {**(design or {}), "strategy": default}}
        return data

    @field_validator("parameters", "outputs")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("at least one entry is needed")
        for name in v:
            if not _NAME.match(name) or keyword.iskeyword(name):
                raise ValueError(f"{name!r} is not a valid name (letters, digits, '_')")
            if name in RESERVED_NAMES:
                raise ValueError(f"{name!r} is reserved by the store; rename it")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> CampaignSpec:
        clash = sorted(set(self.parameters) & set(self.outputs))
        if clash:
            raise ValueError(f"names used both as parameter and output: {clash}")
        if self.simulator.command is not None:
            from emucamp.simulator import CommandSimulator

            known = set(self.parameters) | {"sample_id", "workdir", "spec_dir", "python"}
            used = CommandSimulator(tuple(self.simulator.command), ".").placeholders()
            unknown = sorted(used - known)
            if unknown:
                raise ValueError(
                    f"simulator.command uses unknown placeholder(s) {unknown}; "
                    f"known: {sorted(known)}"
                )
        if self.pool is None:
            for name, p in self.parameters.items():
                if p.low is None or p.high is None:
                    raise ValueError(
                        f"parameters.{name}: low and high are required (without a [pool] "
                        "to take them from)"
                    )
            if self.design.strategy in ("straddle", "random"):
                raise ValueError(f"design.strategy {self.design.strategy!r} needs a [pool]")
        elif self.design.strategy not in POOL_STRATEGIES:
            raise ValueError(
                f"design.strategy {self.design.strategy!r} does not select from a pool; "
                f"use one of {list(POOL_STRATEGIES)}"
            )
        elif self.design.candidates is not None:
            raise ValueError(
                "design.candidates: a [pool] campaign's candidates are the pool's rows; remove it"
            )
        if self.goal is not None and self.goal.output not in self.outputs:
            raise ValueError(
                f"goal.output {self.goal.output!r} is not a declared output {list(self.outputs)}"
            )
        if self.goal is not None and self.pool is None:
            raise ValueError("[goal] screens a [pool]; add one")
        greybox = self.emulator.prior_mean is not None or any(
            o.positive for o in self.outputs.values()
        )
        fields = [name for name, o in self.outputs.items() if o.shape is not None]
        if fields and (self.emulator.prior_mean is not None or self.pool is not None):
            raise ValueError(
                f"field output(s) {fields} cannot be used with emulator.prior_mean or a [pool] yet"
            )
        if greybox and self.goal is not None:
            raise ValueError(
                "pool screening ([goal]) works on the GP's own scale: emulator.prior_mean and "
                "positive outputs cannot be used with it yet"
            )
        if self.design.strategy == "straddle" and self.goal is None:
            raise ValueError("design.strategy 'straddle' needs a [goal]")
        for rule in ("screening_confidence", "screening_accuracy"):
            if getattr(self.stop, rule) is not None and self.goal is None:
                raise ValueError(f"stop.{rule} needs a [goal]")
        if self.design.initial is not None and self.design.initial > self.stop.max_simulations:
            raise ValueError(
                f"design.initial ({self.design.initial}) exceeds stop.max_simulations "
                f"({self.stop.max_simulations})"
            )
        return self

    # -- derived views -------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Folder relative paths are resolved against (the spec file's folder)."""
        return self._base_dir

    def with_base_dir(self, base_dir: str | Path) -> CampaignSpec:
        """A copy whose relative paths resolve against ``base_dir``."""
        spec = self.model_copy()
        spec._base_dir = Path(base_dir).resolve()
        return spec

    @property
    def space(self) -> Space:
        """The design :class:`Space` (with a pool, after :meth:`with_bounds`)."""
        params = []
        for n, p in self.parameters.items():
            if p.low is None or p.high is None:
                raise SpecError(f"parameters.{n}: bounds not set yet (load the pool first)")
            params.append(Parameter(n, p.low, p.high, p.log))
        return Space(params)

    def with_bounds(self, low: dict[str, float], high: dict[str, float]) -> CampaignSpec:
        """A copy whose parameters without bounds take these (a pool's range).

        Raises:
            SpecError: a parameter would get equal bounds, or log bounds at or below 0.
        """
        params = {}
        for name, p in self.parameters.items():
            lo = p.low if p.low is not None else low[name]
            hi = p.high if p.high is not None else high[name]
            if not lo < hi:
                raise SpecError(
                    f"parameters.{name}: the pool's values span [{lo:g}, {hi:g}]; a feature "
                    "must vary (or give low and high)"
                )
            if p.log and lo <= 0:
                raise SpecError(f"parameters.{name}: log = true needs values > 0 (got {lo:g})")
            params[name] = ParameterSpec(low=lo, high=hi, log=p.log)
        spec = self.model_copy(update={"parameters": params})
        spec._base_dir = self._base_dir
        return spec

    @property
    def pool_path(self) -> Path | None:
        """Absolute path of the candidate pool, if the campaign screens one."""
        if self.pool is None:
            return None
        path = Path(self.pool.path)
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def output_names(self) -> list[str]:
        """Declared output names, in order."""
        return list(self.outputs)

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the field outputs (scalar outputs are left out)."""
        return {name: tuple(o.shape) for name, o in self.outputs.items() if o.shape is not None}

    @property
    def store_path(self) -> Path:
        """Absolute path of the campaign store."""
        path = Path(self.campaign.store or f"runs/{self.campaign.name}.zarr")
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def initial_points(self) -> int:
        """Size of the initial design."""
        if self.design.initial is not None:
            return self.design.initial
        return min(max(8, 2 * len(self.parameters) + 2), self.stop.max_simulations)

    def to_json_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-able data (what the store keeps)."""
        return self.model_dump(mode="json")


def _format_error(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    parts = [str(p) for p in first["loc"] if not str(p).startswith("function-")]
    # A key is shown as written unless it holds spaces or control characters.
    loc = ".".join(p if p.isprintable() and p.strip() == p and p else repr(p) for p in parts)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required but missing"
    value = first.get("input")
    shown = "" if first["type"] in {"missing"} or isinstance(value, dict) else f" (got {value!r})"
    more = len(exc.errors()) - 1
    tail = f" [+{more} more error{'s' if more > 1 else ''}]" if more else ""
    where = f"{source}: " if source else ""
    if not loc and re.match(r"[a-z_]+\.[A-Za-z_]", msg):
        line = f"{where}{msg}{shown}{tail}"  # a cross-check that names its own field
    else:
        line = f"{where}{loc or 'spec'}: {msg}{shown}{tail}"
    return line.replace("\r", "\\r").replace("\n", "\\n")  # always one line


def parse_spec(data: Any, source: str = "", base_dir: str | Path | None = None) -> CampaignSpec:
    """Validate spec data (a mapping) into a :class:`CampaignSpec`.

    Raises:
        SpecError: one line naming the first bad field.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"{source or 'spec'}: expected a table of sections, got {type(data).__name__}"
        )
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(exc, source)) from None
    return spec.with_base_dir(base_dir if base_dir is not None else Path.cwd())


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign spec from a ``.toml``, ``.yaml`` or ``.yml`` file.

    Relative paths inside the spec (store, workdir, command program, the import path's
    module folder) resolve against the file's folder.

    Raises:
        SpecError: the file is missing, unparsable, or a field is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        else:
            raise SpecError(f"{path}: unknown spec format {path.suffix!r} (use .toml or .yaml)")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()}: {detail}") from None
    return parse_spec(data, source=str(path), base_dir=path.parent)
