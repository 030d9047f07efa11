"""Typed, validated lineage specs.

Every bad input becomes a one-line `SpecError` that names the problem and the fix, raised
before any data is loaded or any training starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from study.engine.data import DATASETS
from study.engine.models import NATIVE_INIT
from study.engine.models.init import INIT_SCHEMES
from study.engine.registry import branch, dataset_info, load_spec_plugins, model_info, sources, strategy
from study.engine.tickets import TicketRef
from study.errors import SpecError
from study.typed_yaml import build, choice, load_yaml

SCOPES = ("layerwise", "global")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "warmup", "cosine")
MAX_ITERATIONS = 10**9
MAX_ROUNDS = 500
MAX_SEED = 2**31 - 1
KEEP_TRAINED = ("none", "last", "every")  # the rounds whose trained weights the lake keeps


@dataclass(frozen=True)
class TrainSpec:
    lr: float
    iterations: int
    optimizer: str = "adam"
    batch_size: int = 60
    eval_every: int = 100
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_iterations: int = 0
    grad_clip: float = 0.0  # the gradient's largest global L2 norm (0: no clipping)

    def validate(self) -> None:
        choice("train.optimizer", self.optimizer, OPTIMIZERS)
        choice("train.schedule", self.schedule, SCHEDULES)
        if not self.lr > 0:
            raise SpecError(f"train.lr must be > 0, got {self.lr}; set e.g. lr: 1.2e-3")
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise SpecError(f"train.iterations must be in [1, {MAX_ITERATIONS}], got {self.iterations}")
        if not self.gamma > 0:
            raise SpecError(f"train.gamma is the step schedule's decay factor and must be > 0, got {self.gamma}")
        if self.batch_size < 1:
            raise SpecError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if not 1 <= self.eval_every:
            raise SpecError(f"train.eval_every must be >= 1, got {self.eval_every}")
        if not 0 <= self.momentum < 1:
            raise SpecError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise SpecError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise SpecError(
                f"train.grad_clip is the gradient's largest norm and must be >= 0 (0: off), got {self.grad_clip}"
            )
        if self.schedule == "step" and not self.milestones:
            raise SpecError("train.schedule 'step' needs train.milestones, e.g. milestones: [20000, 30000]")
        if any(a >= b for a, b in itertools.pairwise(self.milestones)) or any(
            not 0 < m < self.iterations for m in self.milestones
        ):
            raise SpecError(
                f"train.milestones must be increasing iterations inside (0, {self.iterations}), got {list(self.milestones)}"
            )
        if self.schedule == "cosine" and (self.milestones or self.warmup_iterations):
            raise SpecError("train.schedule 'cosine' takes no milestones or warmup_iterations; remove them")
        if self.schedule == "warmup" and not 0 < self.warmup_iterations < self.iterations:
            raise SpecError(
                f"train.schedule 'warmup' needs 0 < warmup_iterations < iterations ({self.iterations}), got {self.warmup_iterations}"
            )


@dataclass(frozen=True)
class PruneSpec:
    """How much to prune per round.

    layerwise: `rates` maps a layer kind (fc, conv, output) to its per-round rate; kinds left out
    take the model's paper default. global: one `rate` over all prunable weights, and an optional
    `output_rate` that prunes the output layer on its own. `exempt` lists kinds never pruned
    (e.g. [ih_master, hh_master]: the ON-LSTM master-gate exemption).
    """

    scope: str = "layerwise"
    rates: dict[str, float] = field(default_factory=dict)
    rate: float | None = None
    output_rate: float | None = None
    exempt: tuple[str, ...] = ()

    def validate(self) -> None:
        choice("prune.scope", self.scope, SCOPES)
        for kind, r in self.rates.items():
            _rate(f"prune.rates.{kind}", r)
        if self.rate is not None:
            _rate("prune.rate", self.rate)
        if self.output_rate is not None:
            _rate("prune.output_rate", self.output_rate)
        if self.scope == "global" and self.rate is None:
            raise SpecError("prune.scope 'global' needs prune.rate (the fraction pruned per round), e.g. rate: 0.2")
        if self.scope == "global" and self.rates:
            raise SpecError(
                "prune.rates is for scope 'layerwise'; with scope 'global' use prune.rate and prune.output_rate"
            )
        if self.scope == "layerwise" and (self.rate is not None or self.output_rate is not None):
            raise SpecError(
                "prune.rate/output_rate are for scope 'global'; with scope 'layerwise' use prune.rates: {fc: 0.2, output: 0.1}"
            )


@dataclass(frozen=True)
class DataSpec:
    root: str | None = None
    download: bool = False
    validation_size: int = 5000
    split_seed: int = 0
    augment: bool | None = None
    synthetic_size: int = 3000
    args: dict[str, Any] = field(default_factory=dict)  # a loader's keyword arguments (dataset: package.module:loader)
    label_column: str = "label"  # dataset parquet:PATH: the column of class labels
    channels: int | None = None  # repeat a grey image's channel (e.g. 3 for an ImageNet model)
    resize: tuple[int, ...] = ()  # [H, W]: resize every image
    train_subset: int | None = None  # a seeded random subset of the training split (before the hold-out)
    test_subset: int | None = None

    def validate(self) -> None:
        if self.channels is not None and self.channels not in (1, 3):
            raise SpecError(f"data.channels repeats a grey channel to 1 or 3 channels, got {self.channels}")
        if self.resize and (len(self.resize) != 2 or min(self.resize) < 1):
            raise SpecError(f"data.resize is [height, width] in pixels, got {list(self.resize)}")
        for what, n in (("train_subset", self.train_subset), ("test_subset", self.test_subset)):
            if n is not None and n < 2:
                raise SpecError(f"data.{what} must be >= 2 examples, got {n}")
        if self.root and not self.download and not Path(self.root).expanduser().exists():
            raise SpecError(
                f"data.root {self.root} does not exist; fix the path, or remove data.root to use "
                f"$STUDY_DATA_DIR, the cache or the system's copy"
            )
        if self.validation_size < 1:
            raise SpecError(f"data.validation_size must be >= 1, got {self.validation_size}")
        if not 0 <= self.split_seed <= MAX_SEED:
            raise SpecError(f"data.split_seed must be in [0, {MAX_SEED}], got {self.split_seed}")
        if self.synthetic_size < 2:
            raise SpecError(f"data.synthetic_size must be >= 2, got {self.synthetic_size}")


@dataclass(frozen=True)
class InstabilitySpec:
    """Instability analysis (engine/instability.py): at each of `rounds`, a second copy of the
    round's network trains from the round's restart point (round 0: θ_k) on another data order,
    and both are evaluated at `points` evenly spaced places on the line between them."""

    rounds: tuple[int, ...] = ()
    points: int = 11

    def validate(self) -> None:
        if not MIN_PATH_POINTS <= self.points <= MAX_PATH_POINTS:
            raise SpecError(
                f"instability.points must be in [{MIN_PATH_POINTS}, {MAX_PATH_POINTS}] (points on the line "
                f"between the two copies), got {self.points}"
            )
        if any(r < 0 for r in self.rounds) or len(set(self.rounds)) < len(self.rounds):
            raise SpecError(f"instability.rounds must list distinct rounds >= 0, got {list(self.rounds)}")

    def check_last_round(self, last: int) -> None:
        """Every listed round exists in a lineage whose last round is `last`."""
        late = sorted(r for r in self.rounds if r > last)
        if late:
            raise SpecError(
                f"instability.rounds {late} are past the lineage's last round {last}; list rounds in 0..{last}"
            )


MIN_PATH_POINTS, MAX_PATH_POINTS = 11, 101


@dataclass(frozen=True)
class LineageSpec:
    model: str
    dataset: str
    train: TrainSpec
    strategy: str = "imp"
    rewind_iteration: int = 0
    prune: PruneSpec = field(default_factory=PruneSpec)
    rounds: int | None = None
    target_remaining: float | None = None
    seed: int = 0
    init: str | None = None
    data: DataSpec = field(default_factory=DataSpec)
    model_args: dict[str, Any] = field(default_factory=dict)
    chance_margin: float | None = 0.02  # the dense round must beat chance on validation by this much (null: no check)
    branches: tuple[str, ...] = ()  # paired controls trained off every pruning round (engine/branches.py)
    instability: InstabilitySpec = field(default_factory=InstabilitySpec)
    plugins: tuple[str, ...] = ()  # modules to import first: they register models, datasets, strategies...
    output_layer: str | None = None  # a user's model: its output layer's module name (default: its last Linear)
    init_from: TicketRef | None = None  # start from a ticket: its mask and starting weights (transfer)
    keep_trained: str = "none"  # the lake keeps θ_k, and the trained weights of none, the last or every round

    def validate(self) -> None:
        load_spec_plugins(self)
        info, data = model_info(self.model), dataset_info(self.dataset)
        strategy(self.strategy)
        if data.inputs != info.inputs:
            fits = ", ".join(name for name, d in DATASETS.items() if d.inputs == info.inputs)
            raise SpecError(
                f"model {self.model} takes {info.inputs} data but dataset {self.dataset} is {data.inputs} data; "
                f"use one of these datasets: {fits}"
            )
        for arg, value in self.model_args.items():
            if info.model_args is None:
                continue  # a factory that takes **kwargs: it says itself what it refuses
            if arg not in info.model_args:
                allowed = ", ".join(info.model_args) or "none"
                close = difflib.get_close_matches(arg, info.model_args, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise SpecError(f"model_args.{arg}: {self.model} has no such argument; {hint}allowed: {allowed}")
            if info.identity is None:
                _check_model_arg(arg, value, info.model_arg_defaults.get(arg))
        if self.output_layer is not None and info.identity is None:
            raise SpecError(f"output_layer: model {self.model} declares its own output layer; remove output_layer")
        choice("keep_trained", self.keep_trained, KEEP_TRAINED)
        if self.chance_margin is not None and not 0 <= self.chance_margin < 1:
            raise SpecError(f"chance_margin is a fraction of accuracy in [0, 1), got {self.chance_margin}")
        if self.init is not None:
            choice("init", self.init, (*INIT_SCHEMES, NATIVE_INIT))
        if self.init_from is not None:
            self.init_from.validate()
            problem = strategy(self.strategy).ticket_problem
            if problem:
                raise SpecError(f"init_from: strategy {self.strategy} {problem}; use imp, lr_rewind, oneshot...")
        self.train.validate()
        self.prune.validate()
        self.data.validate()
        if not 0 <= self.seed <= MAX_SEED:
            raise SpecError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        known_kinds = info.layer_kinds
        for kind in self.prune.exempt:
            if kind not in known_kinds:
                raise SpecError(
                    f"prune.exempt: model {self.model} has no '{kind}' weights; its kinds are {', '.join(known_kinds)}"
                )
        if set(known_kinds) <= set(self.prune.exempt):
            raise SpecError(
                f"prune.exempt exempts every kind of {self.model}'s weights, so nothing would be pruned; "
                f"leave at least one of {', '.join(known_kinds)} out of it"
            )
        for kind in self.prune.rates:
            if kind not in known_kinds:
                raise SpecError(
                    f"prune.rates.{kind}: model {self.model} has no '{kind}' layers; its kinds are {', '.join(known_kinds)}"
                )
        if (self.rounds is None) == (self.target_remaining is None):
            raise SpecError(
                "give exactly one of rounds (number of pruning rounds) or target_remaining (% of weights to reach)"
            )
        if self.rounds is not None and not 0 <= self.rounds <= MAX_ROUNDS:
            raise SpecError(f"rounds must be in [0, {MAX_ROUNDS}], got {self.rounds}")
        if self.target_remaining is not None and not 0 < self.target_remaining < 100:
            raise SpecError(f"target_remaining is a percentage in (0, 100), got {self.target_remaining}")
        if not 0 <= self.rewind_iteration < self.train.iterations:
            raise SpecError(
                f"rewind_iteration {self.rewind_iteration} is outside the round (0 <= k < train.iterations = {self.train.iterations}); lower it"
            )
        strategy(self.strategy).check(self)
        for name in self.branches:
            problem = branch(name).problem(self)
            if problem:
                raise SpecError(problem)
        if len(set(self.branches)) < len(self.branches):
            raise SpecError(f"branches lists a branch twice: {list(self.branches)}; name each once")
        self.instability.validate()
        if self.rounds is not None:  # else the plan, which counts the rounds to target_remaining, checks
            self.instability.check_last_round(min(self.rounds, 1) if strategy(self.strategy).one_shot else self.rounds)
        if self.branches and self.rounds == 0:
            raise SpecError("branches train off pruning rounds, and rounds is 0; set rounds >= 1 or drop branches")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def hparam_dict(self) -> dict[str, Any]:
        """What identifies the lineage (OpenLTH's rule): model, dataset, strategy and seed, plus
        every setting that differs from its default. A new field with a default therefore keeps
        every existing id, lake row and checkpoint valid. Where the data lives is not part of it."""
        d = _non_default(self)
        d.update(model=self.model, dataset=self.dataset, strategy=self.strategy, seed=self.seed)
        # a value equal to the model's own default is no change either (and 0 is 0.0)
        info = model_info(self.model)
        args = {
            k: _number(v) for k, v in self.model_args.items() if _number(v) != _number(info.model_arg_defaults.get(k))
        }
        rates = {k: float(v) for k, v in self.prune.rates.items() if float(v) != info.default_rates.get(k)}
        if self.branches:
            d["branches"] = sorted(self.branches)  # a set of controls: their order changes nothing
        if self.instability.rounds:
            d.setdefault("instability", {})["rounds"] = sorted(self.instability.rounds)
        for key, value in (("model_args", args), ("init", None if self.init == info.default_init else self.init)):
            if value:
                d[key] = value
            else:
                d.pop(key, None)
        prune = {k: v for k, v in d.get("prune", {}).items() if k != "rates"}
        if rates:
            prune["rates"] = rates
        if prune:
            d["prune"] = prune
        else:
            d.pop("prune", None)
        data = {k: v for k, v in d.get("data", {}).items() if k not in ("root", "download")}
        if data:
            d["data"] = data
        else:
            d.pop("data", None)
        code = sources(self)  # a user's model, data or plugins: their import paths and source hashes
        if code:
            d["sources"] = code
        if self.init_from is not None:
            d["init_from"] = self.init_from.identity()
        d.pop("plugins", None)  # named in `sources`, with their source hashes
        d.pop("keep_trained", None)  # what the lake keeps, not what the lineage does
        return d

    def config_hash(self) -> str:
        blob = json.dumps(self.hparam_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def lineage_id(self) -> str:
        return f"lin-{self.config_hash()[:12]}"

    def replace(self, **changes: Any) -> LineageSpec:
        spec = dataclasses.replace(self, **changes)
        spec.validate()
        return spec


def _number(value: Any) -> Any:
    """Numbers as floats (so 0 and 0.0 hash alike); anything else as it is."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _check_model_arg(arg: str, value: Any, default: Any) -> None:
    """A model argument has the type of its default: sizes are positive integers, dropout rates
    fractions in [0, 1), switches true/false."""
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool) and value >= 1, "a positive integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
        want = "a fraction in [0, 1)"
    else:
        ok, want = isinstance(value, (int, float, bool, str)), "a number"
    if not ok:
        raise SpecError(f"model_args.{arg} must be {want}, got {value!r}")


def _non_default(obj: Any) -> dict[str, Any]:
    """The fields of dataclass `obj` that differ from their defaults (required fields always),
    recursing into nested dataclasses; a nested one left at its defaults is omitted."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if dataclasses.is_dataclass(value):
            inner = _non_default(value)
            if inner or not has_default:
                out[f.name] = inner
            continue
        if not has_default:
            out[f.name] = _plain(value)
            continue
        default = f.default if f.default is not dataclasses.MISSING else cast(Callable[[], Any], f.default_factory)()
        if _plain(value) != _plain(default):
            out[f.name] = _plain(value)
    return out


def _rate(name: str, r: float) -> None:
    if not isinstance(r, (int, float)) or not 0 < r < 1:
        raise SpecError(
            f"{name} = {r} is impossible: a prune rate is the fraction pruned per round, strictly between 0 and 1"
        )


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def lineage_spec_from_dict(raw: Any) -> LineageSpec:
    spec = build(LineageSpec, raw, "")
    spec.validate()
    return spec


def load_lineage_spec(path: str | Path) -> LineageSpec:
    raw = load_yaml(path)
    if isinstance(raw, dict) and "lineage" in raw:
        if len(raw) > 1:
            others = ", ".join(str(k) for k in raw if k != "lineage")
            raise SpecError(f"{path}: a lineage spec file holds 'lineage:' and nothing else; found also {others}")
        raw = raw["lineage"]
    try:
        return lineage_spec_from_dict(raw)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
