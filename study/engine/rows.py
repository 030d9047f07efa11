"""What the engine reports: one `RoundResult` per lineage-round. The lake's tables are derived
from these dataclasses (`study.lake.schema`), so a new column is one field here plus the code that
fills it. Plain Python: nothing here imports torch or pyarrow.

Field metadata the lake reads: `key` (never null: it identifies the row), `category`
(dictionary-encoded, the type hive partition values get) and `doc` (the column's description,
stored in the Parquet schema)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def key(doc: str, category: bool = False) -> dict[str, Any]:
    return {"key": True, "category": category, "doc": doc}


def doc(text: str) -> dict[str, Any]:
    return {"doc": text}


@dataclass(frozen=True)
class LineageColumns:
    """The columns that identify a lineage, shared by the rounds and lineages tables."""

    study: str = field(metadata=key("the study (a hive partition)", category=True))
    strategy: str = field(
        metadata=key("the ticket-finding strategy (a hive partition); a branch: <trunk's>.<branch>", category=True)
    )
    trial_id: str = field(metadata=key("the trial id: a Tune trial and seed, or a lineage run on its own"))
    lineage_id: str = field(
        metadata=key("lin-<hash of the config>: the same config always gets the same id (a branch: <trunk's>.<branch>)")
    )
    config_hash: str = field(metadata=key("the hash of every setting that differs from its default"))
    model: str
    dataset: str
    seed: int

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RoundResult(LineageColumns):
    round: int = field(metadata=key("0 is the dense round"))
    remaining_pct: float
    layer_remaining_pct: dict[str, float]
    scope: str
    prune_rate: float
    lr: float
    rewind_iteration: int
    early_stop_iteration: int = field(
        metadata=doc("the iteration of minimum validation loss (the paper's early-stopping point)")
    )
    val_acc: float = field(metadata=doc("selection data: accuracy on the validation split at the early-stop iteration"))
    val_loss: float
    test_acc: float = field(
        metadata=doc("reporting data: accuracy on the test split at the same iteration; never used to choose")
    )
    test_loss: float
    final_val_acc: float
    final_test_acc: float
    final_train_loss: float | None
    iterations: int
    wall_seconds: float
    device: str
    code_version: str
    curve_iteration: list[int]
    curve_train_loss: list[float | None]
    curve_val_loss: list[float]
    curve_val_acc: list[float]
    curve_test_acc: list[float]
    # sequence models only
    val_perplexity: float | None = None
    test_perplexity: float | None = None
    parse_f1: dict[str, float] | None = None
    parse_baselines: dict[str, float] | None = None
    group_remaining_pct: dict[str, float] | None = None  # per layer kind (all models)
    accuracy_by_length: dict[str, float] | None = None
    parse_examples_json: str | None = None
    chance_val_acc: float | None = field(
        default=None, metadata=doc("majority-class accuracy on validation (the degenerate-lineage check)")
    )
    # theoretical cost (Blalock et al., 2020): one forward pass of the task's probe input
    macs_dense: int | None = field(
        default=None,
        metadata=doc(
            "weight multiply-accumulates of one forward of one example (an image; an 8-token sequence or pair)"
        ),
    )
    macs_remaining: int | None = field(
        default=None, metadata=doc("the same with the mask: pruned weights cost nothing")
    )
    compression_ratio: float | None = field(
        default=None, metadata=doc("all parameters (biases, normalisation included) / parameters the mask keeps")
    )
    theoretical_speedup: float | None = field(default=None, metadata=doc("macs_dense / macs_remaining"))
    # branches (engine/branches.py): a control trained off its trunk's round, paired with the trunk's row
    branch: str | None = field(
        default=None, metadata=doc("the branch this row's lineage is (random_reinit...); null on a trunk's rows")
    )
    trunk_lineage_id: str | None = field(
        default=None, metadata=doc("the lineage a branch grew from: its row of the same round is the pair")
    )

    # instability (engine/instability.py): the round's barriers; the whole path is in the instability table
    val_error_barrier: float | None = field(
        default=None,
        metadata=doc("selection data: the validation error barrier between two copies of this round (instability)"),
    )
    test_error_barrier: float | None = field(
        default=None, metadata=doc("reporting data: the same barrier on the test split")
    )
    # sequence classifiers: accuracy_by_length's chance line and where generalisation starts
    chance_by_length: dict[str, float] | None = field(
        default=None,
        metadata=doc(
            "the most frequent label's share of each length's test examples (accuracy_by_length's chance line)"
        ),
    )
    trained_max_length: int | None = field(
        default=None,
        metadata=doc("the longest length in the training data: accuracy_by_length beyond it is generalisation"),
    )
    threads: int | None = field(
        default=None,
        metadata=doc(
            "torch CPU threads the round trained with: float sums round by thread count, so rows agree bit for bit only at equal threads"
        ),
    )


@dataclass(frozen=True)
class MaskResult(LineageColumns):
    """A round's mask, packed: per masked weight tensor its size, its kept count and its bits
    (numpy packbits of the flattened bool mask, big-endian bit order, zero-padded to a byte)."""

    round: int = field(metadata=key("the round whose training used this mask"))
    remaining_pct: float
    layer_size: dict[str, int] = field(metadata=doc("weights per masked tensor"))
    layer_kept: dict[str, int] = field(metadata=doc("weights the mask keeps per tensor"))
    layer_bits: dict[str, bytes] = field(metadata=doc("numpy.packbits of the flattened mask (1 = kept)"))
    branch: str | None = None
    trunk_lineage_id: str | None = None


@dataclass(frozen=True)
class InstabilityResult(LineageColumns):
    """One instability measurement: two copies of a round's network trained from the same
    restart point on different data orders, evaluated on the line between them."""

    round: int = field(metadata=key("the round whose network was measured (0: the dense network)"))
    remaining_pct: float
    rewind_iteration: int = field(metadata=doc("k: both copies trained on from the round's restart at k"))
    alphas: list[float] = field(
        metadata=doc(
            "interpolation weights, 0 = the lineage's own copy (round 0, k > 0: retrained from θ_k), 1 = the second"
        )
    )
    val_loss: list[float]
    val_error: list[float] = field(metadata=doc("1 − validation accuracy at each alpha"))
    test_loss: list[float]
    test_error: list[float]
    val_error_barrier: float | None = field(
        metadata=doc("selection data: max error on the line − mean of the two ends' errors (validation)")
    )
    test_error_barrier: float | None = field(metadata=doc("reporting data: the same on the test split"))
    val_loss_barrier: float | None
    test_loss_barrier: float | None
    iterations: int = field(metadata=doc("iterations the measurement's copies trained"))
    wall_seconds: float
    code_version: str
    error: str | None = field(
        default=None, metadata=doc("why the measurement failed (a copy diverged); null when it did not")
    )


@dataclass(frozen=True)
class LineageIds:
    study: str = "adhoc"
    trial_id: str | None = None
