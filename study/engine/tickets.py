"""Winning tickets as files (DESIGN §11): a round's mask m_r and the weights its survivors start
from (θ_k), plus the round's trained weights when the lake kept them, in one plain torch file
that `torch.load(path, weights_only=True)` reads: a dict of

    format:   "study-ticket/1"
    masks:    {parameter name: bool tensor}, the form torch.nn.utils.prune.custom_from_mask takes
    theta_k:  the state dict the ticket starts from (parameters and buffers)
    trained:  the round's trained state dict, or None
    meta:     what the ticket is: model, dataset, strategy, round, rewind iteration, % remaining,
              the lineage's accuracies, its spec

`load_ticket(path)` is the one-call loader; `Ticket.into(model)` puts it into a model. A lineage
starts from a ticket with `init_from` (a file, or a round in a results lake, which the lake
resolves: `RunContext.tickets`)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from study.errors import SpecError

FORMAT = "study-ticket/1"
StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class TicketRef:
    """Where a lineage's starting ticket is: a `file` written by `study ticket export`, or a
    round of a lineage in a results lake (`results`, `study`, `trial`, `round`)."""

    file: str | None = None
    results: str | None = None
    study: str | None = None
    trial: str | None = None
    round: int | None = None

    @property
    def in_lake(self) -> bool:
        return self.file is None

    def validate(self) -> None:
        lake = {"results": self.results, "study": self.study, "trial": self.trial, "round": self.round}
        if self.file is not None and any(v is not None for v in lake.values()):
            raise SpecError("init_from takes a file, or results/study/trial/round of a lake ticket, not both")
        if self.file is None and any(v is None for v in lake.values()):
            missing = ", ".join(k for k, v in lake.items() if v is None)
            raise SpecError(
                f"init_from: a lake ticket needs results, study, trial and round (missing {missing}); "
                f"or give init_from: {{file: ticket.pt}}"
            )
        if self.file is not None and not Path(self.file).expanduser().is_file():
            raise SpecError(f"init_from.file {self.file} does not exist; export one with `study ticket export`")
        if self.round is not None and self.round < 0:
            raise SpecError(f"init_from.round must be >= 0, got {self.round}")

    def identity(self) -> dict[str, Any]:
        """What identifies the ticket: a file by its content, a lake ticket by where it is."""
        if self.file is not None:
            return {"file_sha256": file_hash(str(Path(self.file).expanduser().absolute()))}
        return {"results": self.results, "study": self.study, "trial": self.trial, "round": self.round}

    def describe(self) -> str:
        if self.file is not None:
            return self.file
        return f"{self.results} study={self.study} trial={self.trial} round={self.round}"


def file_hash(path: str) -> str:
    st = os.stat(path)
    return _hash(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _hash(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class Ticket:
    masks: dict[str, Tensor]
    theta_k: StateDict
    trained: StateDict | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "masks": {n: m.detach().to("cpu", torch.bool) for n, m in self.masks.items()},
            "theta_k": {n: t.detach().cpu() for n, t in self.theta_k.items()},
            "trained": None if self.trained is None else {n: t.detach().cpu() for n, t in self.trained.items()},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Written to a temp name beside `path` and renamed into place."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            torch.save(self.to_dict(), tmp)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return target

    def into(
        self, model: nn.Module, weights: Literal["theta_k", "trained"] = "theta_k", prune_api: bool = False
    ) -> nn.Module:
        """Load the ticket's starting (or trained) weights into `model` and apply its mask: by
        multiplication, or with `prune_api` as torch.nn.utils.prune.custom_from_mask
        reparametrisations (the mask then stays applied while the model trains)."""
        state = self.theta_k if weights == "theta_k" else self.trained
        if state is None:
            raise ValueError("this ticket holds no trained weights (the lake kept none for its round)")
        model.load_state_dict(state)
        modules = dict(model.named_modules())
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            owner, _, attr = name.rpartition(".")
            if prune_api:
                prune.custom_from_mask(modules[owner], attr, mask.to(params[name].device))
            else:
                with torch.no_grad():
                    params[name].mul_(mask.to(params[name].device, params[name].dtype))
        return model

    def fits(self, model: nn.Module, prunable: list[str], label: str) -> None:
        """The ticket's tensors fit `model` (the spec's): a one-line SpecError naming the first misfit."""
        state = model.state_dict()
        for name in prunable:
            if name not in self.masks:
                raise SpecError(
                    f"{label}: it has no mask for {name}, a prunable weight of the spec's model; export a ticket of this model"
                )
        for what, tensors in (("mask", self.masks), ("starting weight", self.theta_k)):
            for name, t in tensors.items():
                if name not in state:
                    raise SpecError(
                        f"{label}: its {what} {name} is not a tensor of the spec's model; export a ticket of this model"
                    )
                if tuple(t.shape) != tuple(state[name].shape):
                    raise SpecError(
                        f"{label}: its {what} {name} is {tuple(t.shape)} but the spec's model has {tuple(state[name].shape)}; "
                        f"start from a ticket of this architecture"
                    )
        missing = [n for n in state if n not in self.theta_k]
        if missing:
            raise SpecError(f"{label}: it has no starting value for {missing[0]}; export a ticket of this model")


def load_ticket(path: str | Path) -> Ticket:
    """A ticket file as a Ticket (a one-line SpecError for anything else)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"ticket {path} does not exist; write one with `study ticket export`")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unreadable file)
        raise SpecError(f"ticket {path} is not a readable torch file ({type(e).__name__}); export it again") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise SpecError(f"{path} is not a ticket ({FORMAT}); write one with `study ticket export`")
    return Ticket(
        {n: m.to(torch.bool) for n, m in blob["masks"].items()},
        blob["theta_k"],
        blob.get("trained"),
        blob.get("meta", {}),
    )


def file_tickets(ref: TicketRef) -> Ticket:
    """The engine's own resolver: ticket files only (the lake resolves lake references)."""
    if ref.file is None:
        raise SpecError(
            "init_from names a ticket in a results lake; run the lineage through the lake "
            "(study lineage, study tune, or study.run_lineage with results=...), which reads it"
        )
    return load_ticket(ref.file)


@dataclass(frozen=True)
class WeightsResult:
    """Weights a lineage hands the lake to keep (`LineageHooks.on_weights`): θ_k once
    (`round` None), and a round's trained weights when the spec keeps them."""

    study: str
    strategy: str
    trial_id: str
    lineage_id: str
    kind: Literal["theta_k", "trained"]
    round: int | None
    state: StateDict
