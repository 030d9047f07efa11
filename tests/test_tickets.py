"""Winning tickets as artifacts (issue 26): the lake keeps θ_k once per lineage and the trained
weights the spec asks for, through its store (a folder or S3); `study ticket export` writes a
round's ticket as one plain torch file; a lineage starts from a ticket (`init_from`: a file or a
lake round) and re-trains it to the lake's own accuracy."""

import io

import numpy as np
import pytest
import torch
import torch.nn.utils.prune
import yaml
from conftest import synthetic_spec_dict

from study.cli import main
from study.engine.data import DATASETS
from study.engine.lineage import LineageHooks, RunContext
from study.engine.models import build_model
from study.engine.spec import lineage_spec_from_dict
from study.engine.tickets import load_ticket
from study.lake.reader import read_lineages, read_table
from study.lake.recorder import run_to_lake

FAST = {"train": {"iterations": 40, "eval_every": 20}, "data": {"validation_size": 200, "synthetic_size": 800}}


def spec_of(**kw):
    return lineage_spec_from_dict(synthetic_spec_dict(**{**FAST, **kw}))


def weight_files(root):
    return sorted(p.name for p in (root / "weights").rglob("*.pt"))


def test_the_lake_keeps_theta_k_once_and_the_trained_weights_the_spec_asks_for(tmp_path):
    seen = {}

    def on_reset(round_, model, mask):
        seen.setdefault(round_, {k: v.clone() for k, v in model.state_dict().items()})

    for keep, files in (
        ("none", ["theta_k.pt"]),
        ("last", ["theta_k.pt", "trained-r002.pt"]),
        ("every", ["theta_k.pt", "trained-r000.pt", "trained-r001.pt", "trained-r002.pt"]),
    ):
        root = tmp_path / keep
        spec = spec_of(rounds=2, rewind_iteration=20, keep_trained=keep)
        from study.lake.recorder import LakeLineage

        lake = LakeLineage(spec, root, context=RunContext(threads=1)).open()
        lake.lineage.hooks = LineageHooks(**{**lake.lineage.hooks.__dict__, "on_reset": on_reset})
        rows = [r.trunk for r in lake]
        assert weight_files(root) == files
    folder = next((tmp_path / "every" / "weights").rglob("theta_k.pt")).parent
    theta_k = torch.load(folder / "theta_k.pt", weights_only=True)
    mask = {k: v != 0 for k, v in seen[1].items() if k.endswith("weight")}
    for name, start in seen[1].items():  # round 1 restarts from θ_k (at iteration 20), masked
        assert torch.equal(theta_k[name] * mask.get(name, 1), start), name
    task = DATASETS["synthetic"].load(spec.data, spec.train.batch_size, 0, torch.device("cpu"))
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=5)
    for r in rows:  # a round's kept weights are the ones its row's final accuracy was measured on
        model.load_state_dict(torch.load(folder / f"trained-r{r.round:03d}.pt", weights_only=True))
        assert task.evaluate(model, "test")[1] == r.final_test_acc


def test_a_ticket_is_exported_and_retrained_to_the_lakes_accuracy(tmp_path, capsys):
    lake = tmp_path / "lake"
    spec = spec_of(rounds=2, keep_trained="last")
    rows = run_to_lake(spec, lake, context=RunContext(threads=1))
    out = tmp_path / "ticket.pt"
    argv = ["ticket", "export", "adhoc", "--trial", spec.lineage_id(), "--round", "2", "--out", str(out)]
    assert main([*argv, "--results", str(lake)]) == 0
    assert "ticket of lenet_300_100 on synthetic" in capsys.readouterr().out

    blob = torch.load(out, weights_only=True)  # plain torch: no class of ours is needed to read it
    assert blob["format"] == "study-ticket/1" and blob["meta"]["round"] == 2
    masks = read_table(lake, "masks").table.to_pylist()
    bits = dict(next(m for m in masks if m["round"] == 2)["layer_bits"])
    for name, mask in blob["masks"].items():  # the lake's packed bits, unpacked here
        flat = np.unpackbits(np.frombuffer(bits[name], dtype=np.uint8))[: mask.numel()].astype(bool)
        assert np.array_equal(flat, mask.flatten().numpy()), name
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=9)
    model.load_state_dict(blob["theta_k"])
    torch.nn.utils.prune.custom_from_mask(model.fc1, "weight", blob["masks"]["fc1.weight"])
    assert int((model.fc1.weight == 0).sum()) >= int((~blob["masks"]["fc1.weight"]).sum())
    assert load_ticket(out).trained is not None

    # re-trained from the file: same seed, data order and schedule give the lake's round-2 accuracy
    retrain = spec_of(rounds=0, init_from={"file": str(out)})
    again = run_to_lake(retrain, lake, context=RunContext(threads=1))[0]
    assert again.remaining_pct == rows[2].remaining_pct
    assert (again.val_acc, again.test_acc, again.val_loss) == (rows[2].val_acc, rows[2].test_acc, rows[2].val_loss)
    # from the lake round itself, recorded in the lineage's identity and its lineages row
    ref = {"results": str(lake), "study": "adhoc", "trial": spec.lineage_id(), "round": 2}
    from_lake = spec_of(rounds=0, init_from=ref)
    assert from_lake.lineage_id() != retrain.lineage_id() != spec_of(rounds=0).lineage_id()
    assert run_to_lake(from_lake, lake, context=RunContext(threads=1))[0].test_acc == rows[2].test_acc
    row = next(r for r in read_lineages(lake).table.to_pylist() if r["lineage_id"] == from_lake.lineage_id())
    assert row["init_from"] == f"{lake} study=adhoc trial={spec.lineage_id()} round=2"


def test_a_ticket_found_on_one_dataset_trains_on_another(tmp_path):
    """Transfer (Morcos et al., 2019): a ticket of a lineage on synthetic images starts a lineage on
    the real Fashion-MNIST (the same shapes): it trains under the ticket's mask from its θ_k, and
    its lineages row names where the ticket came from."""
    lake = tmp_path / "lake"
    source = spec_of(rounds=1)
    run_to_lake(source, lake, context=RunContext(threads=1))
    ref = {"results": str(lake), "study": "adhoc", "trial": source.lineage_id(), "round": 1}
    seen = {}

    def on_reset(round_, model, mask):
        seen.setdefault(round_, {k: v.clone() for k, v in model.state_dict().items()})

    target = lineage_spec_from_dict(
        {
            **synthetic_spec_dict(**FAST),
            "dataset": "fashion_mnist",
            "data": {"train_subset": 600, "test_subset": 200, "validation_size": 100},
            "rounds": 0,
            "chance_margin": None,
            "init_from": ref,
        }
    )
    from study.lake.recorder import LakeLineage

    lineage = LakeLineage(target, lake, study="transfer", context=RunContext(threads=1)).open()
    lineage.lineage.hooks = LineageHooks(**{**lineage.lineage.hooks.__dict__, "on_reset": on_reset})
    (row,) = [r.trunk for r in lineage]
    ticket = load_ticket(main_export(lake, source.lineage_id(), 1, tmp_path / "t.pt"))
    assert row.remaining_pct == pytest.approx(ticket.meta["remaining_pct"])
    for name, mask in ticket.masks.items():  # it started from the ticket: θ_k under the ticket's mask
        assert torch.equal(seen[0][name], ticket.theta_k[name] * mask), name
    (lin,) = read_lineages(lake, "transfer").table.to_pylist()
    assert (
        lin["dataset"] == "fashion_mnist"
        and lin["init_from"] == f"{lake} study=adhoc trial={source.lineage_id()} round=1"
    )


def main_export(lake, trial, round_, out):
    assert main(["ticket", "export", "adhoc", "--trial", trial, "--round", str(round_), "--out", str(out),
                 "--results", str(lake)]) == 0  # fmt: skip
    return out


def test_weights_go_through_the_store_to_s3(s3, tmp_path):
    spec = spec_of(rounds=1, keep_trained="last")
    run_to_lake(spec, "s3://lake/tickets", study="s", context=RunContext(threads=1))
    objects = s3.objects("tickets/weights/")
    prefix = f"tickets/weights/study=s/strategy=imp/{spec.lineage_id()}/"
    assert sorted(objects) == [f"{prefix}theta_k.pt", f"{prefix}trained-r001.pt"]
    assert set(torch.load(io.BytesIO(objects[f"{prefix}theta_k.pt"]), weights_only=True)) == {
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"
    }  # fmt: skip
    out = tmp_path / "t.pt"
    assert main(["ticket", "export", "s", "--trial", spec.lineage_id(), "--round", "1", "--out", str(out),
                 "--results", "s3://lake/tickets"]) == 0  # fmt: skip
    assert load_ticket(out).meta["remaining_pct"] < 100


def test_fresh_moves_a_lineages_weights_with_its_rows(tmp_path):
    spec = spec_of(rounds=0)
    run_to_lake(spec, tmp_path, context=RunContext(threads=1))
    run_to_lake(spec, tmp_path, context=RunContext(threads=1), fresh=True)
    assert len(list((tmp_path / "_superseded").rglob("theta_k.pt"))) == 1
    assert len(list((tmp_path / "weights").rglob("theta_k.pt"))) == 1


@pytest.fixture(scope="module")
def ticket_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("tickets")
    spec = spec_of(rounds=1)
    run_to_lake(spec, root / "lake", context=RunContext(threads=1))
    main(["ticket", "export", "adhoc", "--trial", spec.lineage_id(), "--round", "1", "--out", str(root / "t.pt"),
          "--results", str(root / "lake")])  # fmt: skip
    return root, spec.lineage_id()


BAD = [
    (
        {"dataset": "synthetic_cifar"},
        "init_from ticket {t}: its mask fc1.weight is (300, 784) but the spec's model has (300, 3072)",
    ),
    ({"strategy": "snip"}, "init_from: strategy snip scores the dense θ0 at init, overwriting the ticket's mask"),
    ({"strategy": "random_reinit"}, "init_from: strategy random_reinit re-initialises the survivors at random"),
    ({"init_from": {"file": "{root}/none.pt"}}, "init_from.file {root}/none.pt does not exist"),
    ({"init_from": {"file": "{root}/t.pt", "round": 1}}, "init_from takes a file, or results/study/trial/round"),
    ({"init_from": {"results": "{root}/lake", "study": "adhoc", "trial": "{trial}", "round": 7}}, "has no round 7"),
    (
        {"init_from": {"results": "{root}/lake", "study": "adhoc", "trial": "nobody", "round": 0}},
        "trial 'nobody' is not in",
    ),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_tickets_are_one_line_exit_2_and_nothing_written(ticket_lake, tmp_path, capsys, change, message):
    root, trial = ticket_lake
    spec = {**synthetic_spec_dict(**FAST), "rounds": 1, "init_from": {"file": str(root / "t.pt")}, **change}
    text = yaml.safe_dump(spec).replace("{root}", str(root)).replace("{trial}", trial)
    (tmp_path / "spec.yaml").write_text(text)
    lake = tmp_path / "lake"
    assert main(["lineage", str(tmp_path / "spec.yaml"), "--results", str(lake), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message.format(root=root, t=root / "t.pt") in err and err.count("\n") == 1, err
    assert not any(p.is_file() for p in lake.rglob("*")), "nothing written"


def test_a_bad_export_is_one_line(ticket_lake, tmp_path, capsys):
    root, trial = ticket_lake
    argv = [
        "ticket",
        "export",
        "adhoc",
        "--trial",
        trial,
        "--out",
        str(tmp_path / "x.pt"),
        "--results",
        str(root / "lake"),
    ]
    assert main([*argv, "--round", "5"]) == 2
    assert "has no round 5 in the lake; its rounds: [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
