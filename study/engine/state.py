"""What a lineage carries from round to round, and what its checkpoint holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from study.engine.pruning import Mask
from study.engine.rows import RoundResult

StateDict = dict[str, torch.Tensor]


def clone_state(model: nn.Module) -> StateDict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class LineageState:
    """θ0, θ_k, the last round's trained weights, the current mask and the finished rounds.
    `imp_trained` is the IMP track's trained weights, for strategies whose masks come from one
    (random_reinit); others leave it None. `branch_results` are the branches' rows of the finished
    rounds, `branch_failures` the rounds a branch failed to train, and why (by name)."""

    theta0: StateDict
    mask: Mask
    theta_k: StateDict | None = None
    trained: StateDict | None = None
    imp_trained: StateDict | None = None
    results: list[RoundResult] = field(default_factory=list)
    branch_results: list[RoundResult] = field(default_factory=list)
    branch_failures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def round_done(self) -> int:
        """The last finished round (-1: none yet)."""
        return self.results[-1].round if self.results else -1

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "round_done": self.round_done,  # redundant with results, read by checkpoint_round
            "theta0": self.theta0,
            "theta_k": self.theta_k,
            "trained": self.trained,
            "imp_trained": self.imp_trained,
            "mask": self.mask,
            "results": [r.as_row() for r in self.results],
            "branch_results": [r.as_row() for r in self.branch_results],
            "branch_failures": self.branch_failures,
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> LineageState:
        return cls(
            theta0=saved["theta0"],
            mask=saved["mask"],
            theta_k=saved["theta_k"],
            trained=saved["trained"],
            imp_trained=saved["imp_trained"],
            results=[RoundResult(**r) for r in saved["results"]],
            branch_results=[RoundResult(**r) for r in saved.get("branch_results", [])],
            branch_failures={k: list(v) for k, v in saved.get("branch_failures", {}).items()},
        )
