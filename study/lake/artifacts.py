"""What a winning ticket needs, kept beside the tables: θ_k once per lineage and, as the spec's
`keep_trained` says, the trained weights of no, the last or every round, as plain torch files
written whole through the store (a local temp file renamed; one S3 object under a temporary key
copied into place):

    <root>/weights/study=<s>/strategy=<k>/<trial>/theta_k.pt
    <root>/weights/study=<s>/strategy=<k>/<trial>/trained-r<round>.pt

`export_ticket` joins them with the round's mask (the masks table) into a ticket file
(engine/tickets); `lake_tickets` resolves a lineage's `init_from` that names a lake round."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study.engine.tickets import Ticket, TicketRef, WeightsResult, file_tickets
from study.errors import SpecError
from study.lake.files import check_name, matching, trial_round_files
from study.lake.reader import read_files, read_table
from study.lake.schema import TABLES
from study.lake.store import join, normalize_root, store_for

WEIGHTS = "weights"


def weights_path(root: str | Path, study: str, strategy: str, trial_id: str, round_: int | None) -> str:
    """θ_k (`round_` None) or a round's trained weights."""
    name = "theta_k.pt" if round_ is None else f"trained-r{round_:03d}.pt"
    return join(root, WEIGHTS, f"study={study}", f"strategy={strategy}", trial_id, name)


def write_weights(root: str | Path, result: WeightsResult) -> None:
    """One of a lineage's kept weights, written whole."""
    path = weights_path(root, result.study, result.strategy, result.trial_id, result.round)
    buffer = io.BytesIO()
    torch.save({n: t.detach().cpu() for n, t in result.state.items()}, buffer)
    store_for(root).write_bytes(buffer.getvalue(), path)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    data = store_for(path).read_bytes(path)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def trial_weights(root: str | Path, study: str, trial_id: str) -> list[str]:
    """Every kept-weights file of a trial id (whatever its strategy)."""
    return matching(root, f"{WEIGHTS}/study={study}", [f"strategy=*/{trial_id}/*.pt"])


def lake_ticket(root: str | Path, study: str, trial_id: str, round_: int) -> Ticket:
    """The ticket of a lineage's round (its trunk): mask m_r, θ_k and, when kept, the round's
    trained weights, with what the lake says of the round. One-line SpecErrors name what is
    missing."""
    root = normalize_root(root)
    try:
        check_name("study", study)
        check_name("trial id", trial_id)
    except ValueError as e:
        raise SpecError(str(e)) from None
    lineages = [r for r in read_table(root, "lineages", study).table.to_pylist() if r["trial_id"] == trial_id]
    trunk = next((r for r in lineages if r["branch"] is None), None)
    if trunk is None:
        raise SpecError(f"trial {trial_id!r} is not in study {study!r} of {root}; `study results {root}` lists what is")
    ids = {"lineage_id": trunk["lineage_id"], "round": round_}
    masks = [r for r in _trial_rows(root, study, trial_id, "masks") if _match(r, ids)]
    rounds = [r for r in _trial_rows(root, study, trial_id, "rounds") if r["lineage_id"] == ids["lineage_id"]]
    rows = [r for r in rounds if _match(r, ids)]
    if not masks or not rows:
        done = sorted(r["round"] for r in rounds)
        raise SpecError(f"trial {trial_id} has no round {round_} in the lake; its rounds: {done or 'none yet'}")
    theta = weights_path(root, study, trunk["strategy"], trial_id, None)
    store = store_for(root)
    if not store.exists(theta):
        raise SpecError(
            f"the lake keeps no θ_k for trial {trial_id} (it ran before tickets were kept); run it again with --fresh"
        )
    theta_k = read_weights(theta)
    trained_path = weights_path(root, study, trunk["strategy"], trial_id, round_)
    trained = read_weights(trained_path) if store.exists(trained_path) else None
    mask_row, row = masks[0], rows[0]
    spec = json.loads(trunk["config_json"] or "{}")
    return Ticket(
        masks={n: _unpacked(bits, theta_k[n].shape) for n, bits in dict(mask_row["layer_bits"]).items()},
        theta_k=theta_k,
        trained=trained,
        meta={
            "study": study,
            "trial_id": trial_id,
            "lineage_id": trunk["lineage_id"],
            "model": trunk["model"],
            "dataset": trunk["dataset"],
            "strategy": trunk["strategy"],
            "seed": trunk["seed"],
            "round": round_,
            "rewind_iteration": spec.get("rewind_iteration", 0),
            "remaining_pct": row["remaining_pct"],
            "val_acc": row["val_acc"],
            "test_acc": row["test_acc"],
            "final_test_acc": row["final_test_acc"],
            "spec": spec,
        },
    )


def _trial_rows(root: str, study: str, trial_id: str, kind: str) -> list[dict[str, Any]]:
    schema, keys = TABLES[kind]
    return read_files(trial_round_files(root, study, trial_id, kind), schema, keys).table.to_pylist()


def _match(row: dict[str, Any], ids: dict[str, Any]) -> bool:
    return all(row[k] == v for k, v in ids.items()) and row.get("branch") is None


def _unpacked(bits: bytes, shape: torch.Size) -> torch.Tensor:
    n = int(np.prod(shape))
    flat = np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[:n].astype(bool)
    return torch.from_numpy(flat.reshape(tuple(shape)).copy())


def export_ticket(root: str | Path, study: str, trial_id: str, round_: int, out: str | Path) -> Path:
    """`study ticket export`: the round's ticket as one file (engine/tickets)."""
    return lake_ticket(root, study, trial_id, round_).save(out)


def lake_tickets(ref: TicketRef) -> Ticket:
    """A lineage's `init_from`: a file, or a round of a lineage in a results lake."""
    if not ref.in_lake:
        return file_tickets(ref)
    assert ref.results is not None and ref.study is not None and ref.trial is not None and ref.round is not None
    return lake_ticket(ref.results, ref.study, ref.trial, ref.round)
