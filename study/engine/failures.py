"""Lineages that ran but whose results must never count. Each carries the `status` the lake files
for it; earlier rounds' rows are kept, and nothing selects on them."""

from __future__ import annotations

from study.engine.rows import LineageStatus


class LineageFailure(RuntimeError):
    status = LineageStatus.FAILED


class TrainingDiverged(LineageFailure):
    """The loss became NaN or infinite."""

    status = LineageStatus.DIVERGED


class LineageDegenerate(LineageFailure):
    """The dense round did not clearly beat chance on validation data: nothing after it means
    anything (a learning rate far too high, a broken dataset...)."""

    status = LineageStatus.DEGENERATE
