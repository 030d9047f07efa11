"""Bad input, everywhere: one line on stderr that names the problem and the fix, exit code 2,
and nothing written. Every case runs the real CLI entry point."""

from pathlib import Path

import pytest
import yaml
from conftest import free_port, synthetic_spec_dict

from study.cli import main


def lineage_yaml(tmp_path, **kw):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"lineage": synthetic_spec_dict(**kw)}))
    return str(path)


def study_yaml(tmp_path, **kw):
    raw = {
        "name": "s",
        "base": synthetic_spec_dict(rounds=1),
        "budget": {"num_samples": 2},
        "search": {"train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
        "storage": {"results": str(tmp_path / "lake")},
    }
    raw.update(kw)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"study": raw}))
    return str(path)


def text_file(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def binary_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(bytes(range(256)) * 4)
    return str(path)


def lake(tmp_path):
    return str(tmp_path / "lake")


CASES = {
    "data.root that does not exist": (
        lambda t: ["lineage", lineage_yaml(t, data={"root": str(t / "nowhere")}), "--results", lake(t)],
        "data.root",
        "does not exist",
    ),
    "duplicate YAML keys": (
        lambda t: [
            "lineage",
            text_file(
                t,
                "model: lenet_300_100\ndataset: synthetic\nrounds: 1\nrounds: 2\ntrain: {lr: 0.001, iterations: 10}\n",
            ),
            "--results",
            lake(t),
        ],
        "'rounds' is given twice",
        "keep one",
    ),
    "model/dataset mismatch, caught by plan": (
        lambda t: ["plan", lineage_yaml(t, model="onlstm_lm")],
        "takes text data but dataset synthetic is image data",
        "use one of these datasets: pcfg, english_pcfg, text",
    ),
    "unknown model_args": (
        lambda t: ["plan", lineage_yaml(t, model="onlstm_lm", dataset="pcfg", model_args={"hiden": 8})],
        "model_args.hiden",
        "did you mean 'hidden'",
    ),
    "model_args on a model that takes none": (
        lambda t: ["lineage", lineage_yaml(t, model_args={"width": 3}), "--results", lake(t)],
        "lenet_300_100 has no such argument",
        "allowed: none",
    ),
    "a binary file as the spec": (
        lambda t: ["lineage", binary_file(t), "--results", lake(t)],
        "is not a text YAML file",
        "pass the path",
    ),
    "a directory as the spec": (lambda t: ["plan", str(t)], "is a directory", "spec file inside it"),
    "unsafe study name": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--study", "../up one"],
        "study '../up one' is not allowed",
        "ASCII letters, digits",
    ),
    "non-ASCII trial id": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--trial", "tëst"],
        "trial id 'tëst' is not allowed",
        "starting with a letter or digit",
    ),
    "read-only lake": (
        lambda t: ["lineage", lineage_yaml(t), "--results", "/sys/study-lake"],
        "results lake /sys/study-lake is not writable",
        "pass --results",
    ),
    "batch larger than the training split": (
        lambda t: ["lineage", lineage_yaml(t, train={"batch_size": 5000}), "--results", lake(t)],
        "train.batch_size 5000 is larger than synthetic's training split (900 examples)",
        "lower train.batch_size",
    ),
    "an empty when: list": (
        lambda t: [
            "tune",
            study_yaml(
                t,
                search={
                    "train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2},
                    "rewind_iteration": {"type": "int", "low": 0, "high": 20, "when": {"strategy": []}},
                },
            ),
        ],
        "search.rewind_iteration.when.strategy is an empty list",
        "list the values",
    ),
    "a float grid with step 0": (
        lambda t: [
            "tune",
            study_yaml(
                t, sampler="grid", search={"prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.5, "step": 0}}
            ),
        ],
        "search.prune.rates.fc.step must be > 0",
        "positive step",
    ),
    "a lake URI with an empty part": (
        lambda t: ["lineage", lineage_yaml(t), "--results", "s3://lake//p"],
        "has an empty, '.' or '..' part",
        "s3://bucket/prefix",
    ),
    "a lake URI with keys in it": (
        lambda t: ["results", "s3://AKIA:Planted/x@word99@lake/p"],
        "carries credentials",
        "AWS_ACCESS_KEY_ID",
    ),
    "a lake on a file:// URL": (
        lambda t: ["lineage", lineage_yaml(t), "--results", "file:///tmp/x"],
        "only local folders and s3://",
        "AWS_ENDPOINT_URL",
    ),
    "a bucket name that is a host:port": (
        lambda t: ["compact", "s3://minio:9000/lake", "--study", "s"],
        "is not an S3 bucket name",
        "AWS_ENDPOINT_URL",
    ),
    "an s3 lake without a database for Optuna": (
        lambda t: ["tune", study_yaml(t, storage={"results": "s3://bucket/lake"})],
        "storage.optuna is needed with an s3:// lake",
        "postgresql://",
    ),
    "a lake on an unsupported URL": (
        lambda t: ["tune", study_yaml(t, storage={"results": "gs://bucket/lake"})],
        "only local folders and s3://bucket/prefix",
        "AWS_ENDPOINT_URL",
    ),
    "a database password written in the study": (
        lambda t: ["tune", study_yaml(t, storage={"optuna": "postgresql://u:hunter22@db/optuna"})],
        "holds a password in plain text",
        "${OPTUNA_DB_PASSWORD}",
    ),
    "a study lake on a read-only file system": (
        lambda t: ["tune", study_yaml(t, storage={"results": "/sys/study-lake"})],
        "results lake /sys/study-lake is not writable",
        "pass --results",
    ),
    "compact on a missing lake": (
        lambda t: ["compact", str(t / "no-lake"), "--study", "s"],
        "no results lake at",
        "lake's root folder",
    ),
    "stall_timeout_s of zero": (
        lambda t: ["tune", study_yaml(t, stall_timeout_s=0)],
        "stall_timeout_s must be > 0",
        "null for no limit",
    ),
    # found by fuzzing the CLI
    "an empty lake path": (
        lambda t: ["lineage", lineage_yaml(t), "--results", ""],
        "results lake path is empty",
        "pass --results",
    ),
    "--threads far beyond the machine": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--threads", "100000"],
        "--threads must be between 1 and",
        "got 100000",
    ),
    "--device that is not a device": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--device", "bogus"],
        "--device 'bogus' is not a device",
        "use cpu, cuda or cuda:N",
    ),
    "--device meta": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--device", "meta"],
        "lineages train on cpu or cuda",
        "use one of those",
    ),
    "an infinite learning rate": (
        lambda t: [
            "lineage",
            text_file(t, "model: lenet_300_100\ndataset: synthetic\nrounds: 1\ntrain: {lr: .inf, iterations: 10}\n"),
            "--results",
            lake(t),
        ],
        "train.lr must be a finite number",
        "got inf",
    ),
    "a negative decay factor": (
        lambda t: [
            "lineage",
            lineage_yaml(t, train={"schedule": "step", "milestones": [30], "gamma": -1}),
            "--results",
            lake(t),
        ],
        "train.gamma",
        "must be > 0",
    ),
    "repeated milestones": (
        lambda t: [
            "lineage",
            lineage_yaml(t, train={"schedule": "step", "milestones": [10, 10]}),
            "--results",
            lake(t),
        ],
        "train.milestones must be increasing",
        "got [10, 10]",
    ),
    "every kind exempt from pruning": (
        lambda t: ["plan", lineage_yaml(t, prune={"exempt": ["fc", "output"]})],
        "nothing would be pruned",
        "leave at least one",
    ),
    "a million rounds": (
        lambda t: ["plan", lineage_yaml(t, rounds=1000000)],
        "rounds must be in [0, 500]",
        "got 1000000",
    ),
    "a seed beyond 31 bits": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--seed", str(2**40)],
        "seed must be in [0, 2147483647]",
        str(2**40),
    ),
    "a negative hidden size": (
        lambda t: ["plan", lineage_yaml(t, model="onlstm_lm", dataset="pcfg", model_args={"hidden": -32})],
        "model_args.hidden must be a positive integer",
        "got -32",
    ),
    "a YAML key that is a list": (
        lambda t: ["plan", text_file(t, "lineage: {? [a, b] : 1}\n")],
        "a key must be a plain name",
        "line",
    ),
    "a lineage file with another top-level key": (
        lambda t: ["plan", text_file(t, yaml.safe_dump({"lineage": synthetic_spec_dict(), "extra": 1}))],
        "holds 'lineage:' and nothing else",
        "found also extra",
    ),
    "a search range up to infinity": (
        lambda t: ["tune", study_yaml(t, search={"train.lr": {"type": "float", "low": 1e-4, "high": float("inf")}})],
        "search.train.lr.high must be a finite number",
        "inf",
    ),
    "a negative sampler seed": (
        lambda t: ["tune", study_yaml(t, sampler_seed=-5)],
        "sampler_seed must be in [0, 2**32)",
        "got -5",
    ),
    "a fractional step for an int parameter": (
        lambda t: [
            "tune",
            study_yaml(t, search={"rewind_iteration": {"type": "int", "low": 0, "high": 20, "step": 0.5}}),
        ],
        "an int parameter's step must be a whole number",
        "0.5",
    ),
    "seed as a searched parameter": (
        lambda t: ["tune", study_yaml(t, search={"seed": {"type": "int", "low": 0, "high": 3}})],
        "search.seed: seeds are not searched",
        "seeds: [0, 1, 2]",
    ),
    "a when: condition that can never hold": (
        lambda t: [
            "tune",
            study_yaml(
                t,
                search={
                    "strategy": {"type": "categorical", "choices": ["imp", "random_prune"]},
                    "rewind_iteration": {"type": "int", "low": 0, "high": 20, "when": {"strategy": ["lr_rewind"]}},
                },
            ),
        ],
        "strategy never takes any of ['lr_rewind']",
        "would never be searched",
    ),
    "an Optuna journal under a file": (
        lambda t: ["tune", study_yaml(t, storage={"results": str(t / "lake"), "optuna": "/etc/passwd/s.journal"})],
        "the Optuna journal's folder /etc/passwd is not writable",
        "point storage.optuna",
    ),
    "a model too large to allocate": (
        lambda t: [
            "plan",
            lineage_yaml(
                t,
                model="onlstm_lm",
                dataset="pcfg",
                prune={"scope": "global", "rate": 0.3},
                model_args={"embedding": 16, "hidden": 4_000_000, "layers": 2, "chunk_size": 4},
            ),
            "--no-estimate",
        ],
        "model onlstm_lm with model_args {'chunk_size': 4, 'embedding': 16, 'hidden': 4000000, 'layers': 2} is too "
        "large to allocate on this machine (one tensor of 288,000 GB)",
        "make model_args smaller",
    ),
    "tune --address where no cluster answers": (
        lambda t: ["tune", study_yaml(t), "--address", f"127.0.0.1:{free_port()}"],
        "no Ray cluster answers at 127.0.0.1:",
        "leave --address out",
    ),
    "results for a study the lake does not hold": (
        lambda t: ["results", str(t), "--study", "nope"],
        "no results lake at",
        "pass the lake's root",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_naming_the_fix_and_writes_nothing(case, tmp_path, capsys):
    argv, problem, fix = CASES[case]
    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert problem in err and fix in err, err
    assert "Planted" not in err and "word99" not in err
    assert not (tmp_path / "lake").exists() and not Path("file:").exists()


def test_a_report_written_into_the_lake_is_refused_and_the_lake_is_untouched(tmp_path, capsys):
    """`study report --out` naming a lineage's own Parquet file (it used to be replaced by HTML, and
    the lineage vanished from every view): one line, and the file and the lineage are intact."""
    from conftest import raw_rows

    lake = tmp_path / "lake"
    argv = ["lineage", lineage_yaml(tmp_path, rounds=1), "--results", str(lake), "--quiet", "--threads", "1"]
    assert main([*argv, "--study", "s", "--trial", "t"]) == 0
    target = next((lake / "lineages").rglob("t.parquet"))
    before = target.read_bytes()
    capsys.readouterr()
    for out in (target, lake / "report.html"):
        assert main(["report", "s", "--results", str(lake), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is inside the results lake" in err and "write the report outside it" in err
    assert target.read_bytes() == before and not (lake / "report.html").exists()
    assert [r["trial_id"] for r in raw_rows(lake, "lineages")] == ["t"]


def test_an_address_of_no_cluster_fails_in_seconds_naming_that_address(tmp_path):
    """`study tune --address` where nothing listens: one line naming the very address given, in
    seconds (Ray itself retried for minutes and named another address)."""
    import subprocess
    import sys
    import time

    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "tune", study_yaml(tmp_path), "--address", address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 30
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"no Ray cluster answers at {address} " in proc.stderr


def test_compact_of_an_unknown_study_names_the_ones_there(tmp_path, capsys):
    assert (
        main(
            [
                "lineage",
                lineage_yaml(tmp_path, rounds=1),
                "--results",
                lake(tmp_path),
                "--quiet",
                "--threads",
                "1",
                "--study",
                "known",
            ]
        )
        == 0
    )
    capsys.readouterr()
    before = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    assert main(["compact", lake(tmp_path), "--study", "unknown"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "study 'unknown' has no rounds" in err and "studies there: known" in err
    assert sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet")) == before


@pytest.mark.parametrize(
    "url",
    ["postgresql://study:${{OPTUNA_DB_PASSWORD}}@127.0.0.1:{port}/optuna", "sqlite:////nonexistent/dir/optuna.db"],
)
def test_an_unreachable_optuna_database_fails_before_ray_and_hides_the_password(url, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setenv("OPTUNA_DB_PASSWORD", "hunter2")
    path = study_yaml(tmp_path, storage={"results": str(tmp_path / "lake"), "optuna": url.format(port=free_port())})
    assert main(["tune", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is unreachable" in err and "check the URL" in err, err
    assert "hunter2" not in err
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()
    assert not (tmp_path / "lake" / "rounds").exists()


def test_unreachable_tune_object_storage_fails_before_ray(tmp_path, capsys, monkeypatch):
    """An S3-compatible endpoint that nothing listens on (a free loopback port)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "study")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = study_yaml(tmp_path, storage={"results": str(tmp_path / "lake"), "tune": "s3://studies/tune"})
    assert main(["tune", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not answer for s3://studies/tune" in err and "AWS_ENDPOINT_URL" in err, err
    assert "s3cr3t-key" not in err


def test_results_and_compact_on_a_damaged_lake_name_the_file_and_change_nothing(tmp_path, capsys):
    """A foreign Parquet file is skipped and named; an unknown study is named with the ones there;
    compact refuses a lake whose lineage files cannot be read, and an unsafe study name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = lake(tmp_path)
    assert (
        main(
            [
                "lineage",
                lineage_yaml(tmp_path, rounds=1),
                "--results",
                root,
                "--quiet",
                "--threads",
                "1",
                "--study",
                "x",
                "--trial",
                "t",
            ]
        )
        == 0
    )
    foreign = tmp_path / "lake" / "rounds" / "study=x" / "strategy=imp" / "mine.parquet"
    pq.write_table(pa.table({"a": [1], "b": ["z"]}), foreign)
    (tmp_path / "lake" / "rounds" / "study=x" / "strategy=imp" / "weird.parquet").mkdir()
    capsys.readouterr()
    assert main(["results", root]) == 0
    out, err = capsys.readouterr()
    assert "mine.parquet: not a rounds file" in err and "1 finished" in out
    assert main(["results", root, "--study", "nope"]) == 2
    assert "study 'nope' is not in" in capsys.readouterr().err
    assert main(["compact", root, "--study", "../x"]) == 2
    assert "is not allowed" in capsys.readouterr().err
    before = sorted(str(p) for p in (tmp_path / "lake").rglob("*"))
    lineage_file = next((tmp_path / "lake" / "lineages").rglob("t.parquet"))
    blob = lineage_file.read_bytes()
    lineage_file.write_bytes(b"PAR1 not really")
    assert main(["compact", root, "--study", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable lineage files" in err
    assert sorted(str(p) for p in (tmp_path / "lake").rglob("*")) == before
    lineage_file.write_bytes(blob)
    foreign.unlink()
    assert main(["compact", root, "--study", "x"]) == 0, capsys.readouterr().err


def test_fresh_cannot_supersede_rows_inside_a_compacted_file(tmp_path, capsys):
    root = lake(tmp_path)
    args = ["--results", root, "--quiet", "--threads", "1", "--study", "x", "--trial", "t"]
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1), *args]) == 0
    assert main(["compact", root, "--study", "x"]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in (tmp_path / "lake").rglob("*.parquet")}
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1, seed=1), *args]) == 2
    assert "already holds lineage" in capsys.readouterr().err, "a changed config is seen in compacted rows too"
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1, seed=1), *args, "--fresh"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the compacted file" in err and "new --trial" in err
    assert {p: p.read_bytes() for p in (tmp_path / "lake").rglob("*.parquet")} == before


@pytest.mark.parametrize(
    "url,says",
    [
        ("postgresql://alice:p@ssW0rd9@127.0.0.1:{port}/optuna", "holds a password in plain text"),
        ("postgresql://alice@127.0.0.1:{port}/optuna?password=ssW0rd9", "holds a password= parameter in plain text"),
        ("postgresql://alice:${{PW}}@127.0.0.1:{port}/optuna", "is unreachable"),
        ("postgresql://alice@127.0.0.1:{port}/optuna?password=${{PW}}", "is unreachable"),
    ],
)
def test_passwords_in_awkward_places_are_refused_or_redacted(url, says, tmp_path, capsys, monkeypatch):
    """A password written into the study is refused; one taken from the environment (here with
    an '@' in it) is never shown when the database does not answer."""
    monkeypatch.setenv("PW", "p@ssW0rd9")
    path = study_yaml(tmp_path, storage={"results": str(tmp_path / "lake"), "optuna": url.format(port=free_port())})
    assert main(["tune", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "ssW0rd9" not in err, err


def test_a_checkpoint_of_another_config_is_named_and_kept(tmp_path, capsys):
    """The lake's rows are gone but the trial's checkpoint stays: another config under that trial
    id is refused in one line naming --fresh, and the checkpoint is left as it was."""
    import shutil

    root = lake(tmp_path)
    args = ["--results", root, "--quiet", "--threads", "1", "--trial", "t"]
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1), *args]) == 0
    for table in ("rounds", "masks", "lineages"):
        shutil.rmtree(tmp_path / "lake" / table)
    (ckpt,) = (tmp_path / "lake" / "_checkpoints").rglob("lineage.pt")
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1, seed=1), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "belongs to another config" in err and "--fresh" in err, err
    assert ckpt.read_bytes() == before and not (tmp_path / "lake" / "rounds").exists()
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1, seed=1), *args, "--fresh"]) == 0
