"""Typed, validated study specs: a base lineage, the searched parameters, seeds, objective(s),
sampler, scheduler, budget, resources and storage. Everything is checked here, before Ray starts:
each searched parameter is tried at its edges against the base lineage spec, so an impossible
prune rate or a rewind point past the round is caught with the parameter's name."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.analysis.objectives import ObjectiveSpec
from study.errors import DataUnavailable, SpecError
from study.lake.store import join, normalize_root, normalize_uri, store_for
from study.search.paths import choice_text, missing_part, set_path
from study.secrets import plain_secret, redact
from study.typed_yaml import build, choice, load_yaml

if TYPE_CHECKING:
    from study.engine.spec import LineageSpec

PARAM_TYPES = ("float", "log_float", "int", "categorical")
SAMPLERS = ("tpe", "nsga2", "random", "grid")
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random")
SCHEDULERS = ("asha",)
MAX_GRID = 10_000


@dataclass(frozen=True)
class ParamSpec:
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def validate(self, name: str) -> None:
        choice(f"search.{name}.type", self.type, PARAM_TYPES)
        for other, allowed in self.when.items():
            if not allowed:
                raise SpecError(
                    f"search.{name}.when.{other} is an empty list, so {name} could never be searched; "
                    f"list the values of {other} that switch it on, e.g. [imp, lr_rewind]"
                )
        if self.step is not None and self.type != "categorical":
            if not self.step > 0:
                raise SpecError(f"search.{name}.step must be > 0, got {self.step}; remove it or give a positive step")
            if self.low is not None and self.high is not None and self.step > self.high - self.low:
                raise SpecError(
                    f"search.{name}.step {self.step} is wider than the range [{self.low}, {self.high}]; lower the step"
                )
            if self.type == "log_float":
                raise SpecError(f"search.{name}: a log_float parameter cannot have a step; use type float with a step")
        if self.type == "categorical":
            if not self.choices:
                raise SpecError(f"search.{name}: a categorical parameter needs choices: [...]")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise SpecError(f"search.{name}: needs low < high, got low={self.low} high={self.high}")
        if self.type == "log_float" and self.low <= 0:
            raise SpecError(f"search.{name}: log_float needs low > 0, got {self.low}")
        if self.type == "int" and (int(self.low) != self.low or int(self.high) != self.high):
            raise SpecError(f"search.{name}: int bounds must be whole numbers")
        if self.type == "int" and self.step is not None and int(self.step) != self.step:
            raise SpecError(f"search.{name}: an int parameter's step must be a whole number, got {self.step}")

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter (validated to be given)."""
        assert self.low is not None and self.high is not None, "a numeric parameter has low and high"
        return self.low, self.high

    def edges(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        low, high = self.bounds
        if self.type == "int":
            return [int(low), int(high)]
        return [low, high]

    def sampler_choices(self) -> list[Any]:
        """A categorical parameter's choices as Optuna takes them: a list or mapping choice (such
        as prune.exempt: [ih_master, hh_master]) as its JSON text, `decode` maps it back."""
        return [choice_text(c) for c in self.choices]

    def decode(self, value: Any) -> Any:
        """The choice a sampled value stands for (see `sampler_choices`)."""
        if self.type == "categorical" and isinstance(value, str):
            return next((c for c in self.choices if choice_text(c) == value), value)
        return value

    def grid(self, name: str) -> list[Any]:
        if self.type == "categorical":
            return self.sampler_choices()
        low, high = self.bounds
        if self.type == "int":
            step = int(self.step or 1)
            if (int(high) - int(low)) // step + 1 > MAX_GRID:
                raise SpecError(f"search.{name}: a grid of more than {MAX_GRID} points is too large; raise the step")
            return list(range(int(low), int(high) + 1, step))
        if self.step:
            n = int(round((high - low) / self.step))
            if n + 1 > MAX_GRID:
                raise SpecError(
                    f"search.{name}: a grid of {n + 1} points is too large (at most {MAX_GRID}); raise the step"
                )
            return [low + i * self.step for i in range(n + 1)]
        raise SpecError(f"search.{name}: sampler grid needs a step for float parameters (or categorical choices)")


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "asha"
    grace_pruned_pct: float = 50.0
    reduction_factor: int = 2

    def validate(self) -> None:
        choice("scheduler.type", self.type, SCHEDULERS)
        if not 0 < self.grace_pruned_pct < 100:
            raise SpecError(
                f"scheduler.grace_pruned_pct is the % of weights pruned before a trial can be stopped, in (0, 100); got {self.grace_pruned_pct}"
            )
        if self.reduction_factor < 2:
            raise SpecError("scheduler.reduction_factor must be >= 2")


@dataclass(frozen=True)
class BudgetSpec:
    num_samples: int = 8
    time_budget_s: float | None = None

    def validate(self) -> None:
        if self.num_samples < 1:
            raise SpecError(f"budget.num_samples must be >= 1, got {self.num_samples}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise SpecError("budget.time_budget_s must be > 0 seconds")


@dataclass(frozen=True)
class RuntimeEnvSpec:
    """What Ray ships to every process of the study (Ray's job-level runtime_env), for plugins
    that are not installed on the cluster: `py_modules`, local folders of Python packages (or
    .whl/.zip files, or s3:// / https:// URIs of zips), and a `working_dir`. Not part of the
    study's identity: where code comes from is not what it is (its source hash is, in the lineage
    ids)."""

    py_modules: tuple[str, ...] = ()
    working_dir: str | None = None

    def validate(self) -> None:
        for path in (*self.py_modules, *([self.working_dir] if self.working_dir else [])):
            if "://" not in path and not Path(path).expanduser().exists():
                raise SpecError(
                    f"runtime_env: {path} does not exist here; give the folder of the package to ship (or a URI of its zip)"
                )

    def as_ray(self) -> dict[str, Any] | None:
        env: dict[str, Any] = {}
        if self.py_modules:
            env["py_modules"] = [p if "://" in p else str(Path(p).expanduser().resolve()) for p in self.py_modules]
        if self.working_dir:
            wd = self.working_dir
            env["working_dir"] = wd if "://" in wd else str(Path(wd).expanduser().resolve())
        return env or None


PACK_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class ResourcesSpec:
    """What a lineage holds: `cpu` CPUs and `gpu` of a GPU (`lineages_per_gpu: n` says gpu 1/n).
    Packed (`pack`; auto: when lineages hold part of a GPU and the model packs), a trial's
    lineages train as stacked models in one Ray task per GPU's worth of them (`pack_size`), which
    holds `cpu` CPUs and their GPU shares summed (`task_request`)."""

    cpu: float = 1.0
    gpu: float = 0.0
    lineages_per_gpu: int | None = None
    pack: str | bool = "auto"  # YAML reads on/off as booleans

    def __post_init__(self) -> None:
        if isinstance(self.pack, bool):
            object.__setattr__(self, "pack", "on" if self.pack else "off")

    def validate(self) -> None:
        if self.cpu <= 0 or self.gpu < 0:
            raise SpecError(f"resources need cpu > 0 and gpu >= 0, got cpu={self.cpu} gpu={self.gpu}")
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise SpecError(f"resources.gpu above 1 must be a whole number, got {self.gpu}")
        choice("resources.pack", str(self.pack), PACK_MODES)
        if self.lineages_per_gpu is not None:
            if self.lineages_per_gpu < 1:
                raise SpecError(f"resources.lineages_per_gpu must be >= 1, got {self.lineages_per_gpu}")
            if self.gpu:
                raise SpecError(
                    "resources.gpu and resources.lineages_per_gpu both say a lineage's GPU share; keep one "
                    "(lineages_per_gpu: n is gpu: 1/n)"
                )

    @property
    def lineage_gpu(self) -> float:
        """Each lineage's share of a GPU."""
        return 1 / self.lineages_per_gpu if self.lineages_per_gpu else self.gpu

    def pack_size(self, seeds: int) -> int:
        """Lineages per packed task: as many as one GPU holds (all of a trial's on CPU)."""
        share = self.lineage_gpu
        if share == 0:
            return seeds
        return max(1, min(seeds, int(1 / share + 1e-9)))

    def task_request(self, lineages: int) -> tuple[float, float]:
        """(CPUs, GPUs) of the task that trains `lineages` lineages (packed when more than one)."""
        return self.cpu, self.lineage_gpu * lineages


@dataclass(frozen=True)
class StorageSpec:
    """Where a study keeps its lake (a folder or s3://bucket/prefix), Tune's experiments and
    Optuna's study. A password never appears here: an RDB URL names it as ${VAR}, expanded
    from the environment only when connecting (`expand_env`), so the spec as stored in the lake,
    printed or pickled by Tune holds no secret."""

    results: str = "results"
    tune: str | None = None
    optuna: str | None = None

    def tune_path(self) -> str:
        if self.tune:
            return normalize_uri(self.tune)
        return join(normalize_root(self.results), "_tune")

    def optuna_url(self, study: str) -> str:
        """A journal file path (default) or an RDB URL (sqlite:///..., postgresql://...), as
        written: ${VARS} stay unexpanded."""
        if self.optuna:
            return self.optuna
        return join(normalize_root(self.results), "_optuna", f"{study}.journal")

    def validate(self) -> None:
        if not self.results.strip():
            raise SpecError("storage.results is empty; give the lake's folder or s3://bucket/prefix, e.g. results")
        normalize_root(self.results)
        if not store_for(self.results).on_disk and not self.optuna:
            raise SpecError(
                f"storage.optuna is needed with an s3:// lake ({self.results}): Optuna's journal cannot live in "
                f"an object store; give a postgresql:// URL (password as ${{VAR}}) or a local journal file path"
            )
        if self.tune:
            normalize_uri(self.tune)  # an s3:// one is checked as a lake's root is
        if self.optuna:
            plain = plain_secret(self.optuna)
            if plain:
                raise SpecError(
                    f"storage.optuna {redact(self.optuna)} holds a {plain} in plain text; write it as an environment "
                    f"variable, e.g. postgresql://user:${{OPTUNA_DB_PASSWORD}}@host/db, and set that variable "
                    f"(on Kubernetes, from a Secret)"
                )


@dataclass(frozen=True)
class StudySpec:
    name: str
    base: dict[str, Any]
    search: dict[str, ParamSpec] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    sampler: str = "tpe"
    sampler_seed: int | None = 0
    scheduler: SchedulerSpec | None = None
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    max_concurrent: int | None = None  # trials at once; None: enough to keep every core (GPU) busy
    max_failures: int = 2
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    storage: StorageSpec = field(default_factory=StorageSpec)
    stall_timeout_s: float | None = 1800.0  # stop, saying why, when lineages wait but none runs for this long
    runtime_env: RuntimeEnvSpec = field(default_factory=RuntimeEnvSpec)  # plugins shipped to every Ray worker

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same study (a re-run, which resumes it, may change resources,
        concurrency, failures allowed, the stall timeout and where storage lives, nothing else)."""
        d = self.to_dict()
        return {
            k: d[k] for k in ("base", "search", "seeds", "objective", "sampler", "sampler_seed", "scheduler", "budget")
        }

    def validate(self) -> None:
        from study.lake.files import check_name

        try:
            check_name("study name", self.name)
        except ValueError as e:
            raise SpecError(str(e)) from None
        base = self.base_spec()
        choice("sampler", self.sampler, SAMPLERS)
        self.objective.validate()
        if self.objective.multi and self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
            raise SpecError(
                f"objective {self.objective.name} is multi-objective; use sampler nsga2 or tpe, not {self.sampler}"
            )
        if self.objective.objective.needs_barrier and not base.instability.rounds:
            raise SpecError(
                f"objective {self.objective.name} reads the rounds' instability and base.instability.rounds is empty; "
                f"list the rounds to measure, e.g. instability: {{rounds: [0, 2, 4, 6]}}"
            )
        self.budget.validate()
        self.resources.validate()
        if self.resources.pack == "on":
            try:
                packs, why = self.pack_verdict()
            except DataUnavailable:  # rendered for a cluster that holds the data: each lineage task judges the model
                packs, why = True, None
            if not packs:
                raise SpecError(f"resources.pack is on, but {why}; use pack: auto or off")
        if self.scheduler is not None:
            self.scheduler.validate()
            if self.objective.multi:
                raise SpecError(
                    f"a scheduler stops trials early on one metric; remove it for the multi-objective "
                    f"{self.objective.name} objective"
                )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SpecError(f"seeds must be a non-empty list of distinct integers, got {list(self.seeds)}")
        if self.sampler_seed is not None and not 0 <= self.sampler_seed < 2**32:
            raise SpecError(f"sampler_seed must be in [0, 2**32), got {self.sampler_seed}")
        if "seed" in self.search:
            raise SpecError("search.seed: seeds are not searched; list the replicates in seeds: [0, 1, 2]")
        self.storage.validate()
        self.runtime_env.validate()
        if self.stall_timeout_s is not None and not self.stall_timeout_s > 0:
            raise SpecError(f"stall_timeout_s must be > 0 seconds (or null for no limit), got {self.stall_timeout_s}")
        if (self.max_concurrent is not None and self.max_concurrent < 1) or self.max_failures < 0:
            raise SpecError(
                "max_concurrent must be >= 1 (or left out: enough to fill the cluster) and max_failures >= 0"
            )
        for seed in self.seeds:
            self.lineage_spec({}, seed, where=f"seeds: {seed}")
        for name, param in self.search.items():
            param.validate(name)
            missing = missing_part(base.to_dict(), name)
            if missing:
                raise SpecError(
                    f"search.{name}: the lineage spec has no '{missing}'; "
                    f"searchable names look like train.lr, prune.rates.fc, rewind_iteration, strategy"
                )
            for other, allowed in param.when.items():
                if other not in self.search and other not in ("strategy",):
                    raise SpecError(f"search.{name}.when names '{other}', which is not a searched parameter")
                if other not in self.search:
                    possible = [getattr(base, other, None)]  # fixed by the base spec
                elif self.search[other].type == "categorical":
                    possible = self.search[other].edges()  # its choices
                else:
                    continue  # a numeric range: not checked
                if not set(map(str, allowed)) & set(map(str, possible)):
                    raise SpecError(
                        f"search.{name}.when.{other}: {other} never takes any of {list(allowed)} (it is "
                        f"{', '.join(map(str, possible))}), so {name} would never be searched"
                    )
            conditions = {k: allowed[0] for k, allowed in param.when.items()}
            for value in param.edges():
                self.lineage_spec({**conditions, name: value}, where=f"search.{name}={value}")
        if self.sampler == "grid":
            for name, param in self.search.items():
                param.grid(name)

    def base_spec(self) -> LineageSpec:
        from study.engine.spec import lineage_spec_from_dict  # torch: a trial's process never needs it

        try:
            return lineage_spec_from_dict(self.base)
        except SpecError as e:
            raise SpecError(f"base: {e}") from None

    def packed(self) -> bool:
        """Whether a trial's lineages train packed (auto: when they hold part of a GPU and the
        model packs; a prepared study says on or off, and needs no torch to tell)."""
        if self.resources.pack != "auto":
            return self.resources.pack == "on"
        return 0 < self.resources.lineage_gpu < 1 and self.model_packs()

    def pack_size(self) -> int:
        """Lineages per Ray task: a GPU's worth (all seeds on CPU) when packed, else 1."""
        return self.resources.pack_size(len(self.seeds)) if self.packed() else 1

    def task_request(self) -> tuple[float, float]:
        """(CPUs, GPUs) the largest of a trial's tasks holds."""
        return self.resources.task_request(self.pack_size())

    def tasks_per_trial(self) -> int:
        return -(-len(self.seeds) // self.pack_size())

    def model_packs(self) -> bool:
        return self.pack_verdict()[0]

    def pack_verdict(self) -> tuple[bool, str | None]:
        """Whether the base model's lineages may train packed, and why not (engine/plan.pack_verdict)."""
        from study.engine.plan import pack_verdict  # torch: a trial's process never needs it

        return pack_verdict(self.base_spec())

    def lineage_dict(self, params: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        """The base lineage's YAML mapping with searched values applied (dotted paths: train.lr,
        prune.rates.fc; a sampled value decoded to its choice) and the seed."""
        raw = copy.deepcopy(self.base)
        for name, value in params.items():
            set_path(raw, name, self.search[name].decode(value) if name in self.search else value)
        if seed is not None:
            raw["seed"] = seed
        return raw

    def lineage_spec(self, params: dict[str, Any], seed: int | None = None, where: str = "") -> LineageSpec:
        """The base lineage with searched values applied, as a validated spec."""
        from study.engine.spec import lineage_spec_from_dict

        raw = self.lineage_dict(params, seed)
        try:
            return lineage_spec_from_dict(raw)
        except SpecError as e:
            raise SpecError(f"{where or 'trial'}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_study_spec(path: str | Path) -> StudySpec:
    raw = load_yaml(path)
    if not isinstance(raw, dict) or "study" not in raw:
        raise SpecError(f"{path}: a study spec starts with a top-level 'study:' mapping")
    try:
        spec = build(StudySpec, raw["study"], "study")
        spec = dataclasses.replace(spec, runtime_env=_beside(spec.runtime_env, Path(path).parent))
        spec.validate()
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
    return spec


def _beside(env: RuntimeEnvSpec, folder: Path) -> RuntimeEnvSpec:
    """A runtime_env's relative paths, taken relative to the study file's folder."""

    def place(p: str) -> str:
        return p if "://" in p or Path(p).expanduser().is_absolute() else str((folder / p).resolve())

    return RuntimeEnvSpec(tuple(place(p) for p in env.py_modules), place(env.working_dir) if env.working_dir else None)
