"""Bad input, everywhere: one line on stderr that names the problem and the fix, exit code 2,
and nothing written. Every case runs the real CLI entry point."""
import pytest
import yaml

from conftest import free_port, synthetic_spec_dict
from study.cli import main


def lineage_yaml(tmp_path, **kw):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"lineage": synthetic_spec_dict(**kw)}))
    return str(path)


def study_yaml(tmp_path, **kw):
    raw = {"name": "s", "base": synthetic_spec_dict(rounds=1), "budget": {"num_samples": 2},
           "search": {"train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}},
           "storage": {"results": str(tmp_path / "lake")}}
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
        "data.root", "does not exist"),
    "duplicate YAML keys": (
        lambda t: ["lineage", text_file(t, "model: lenet_300_100\ndataset: synthetic\nrounds: 1\nrounds: 2\n"
                                           "train: {lr: 0.001, iterations: 10}\n"), "--results", lake(t)],
        "'rounds' is given twice", "keep one"),
    "model/dataset mismatch, caught by plan": (
        lambda t: ["plan", lineage_yaml(t, model="onlstm_lm")],
        "takes text data but dataset synthetic is image data", "use one of these datasets: pcfg, text"),
    "unknown model_args": (
        lambda t: ["plan", lineage_yaml(t, model="onlstm_lm", dataset="pcfg", model_args={"hiden": 8})],
        "model_args.hiden", "did you mean 'hidden'"),
    "model_args on a model that takes none": (
        lambda t: ["lineage", lineage_yaml(t, model_args={"width": 3}), "--results", lake(t)],
        "lenet_300_100 has no such argument", "allowed: none"),
    "a binary file as the spec": (
        lambda t: ["lineage", binary_file(t), "--results", lake(t)], "is not a text YAML file", "pass the path"),
    "a directory as the spec": (
        lambda t: ["plan", str(t)], "is a directory", "spec file inside it"),
    "unsafe study name": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--study", "../up one"],
        "study '../up one' is not allowed", "ASCII letters, digits"),
    "non-ASCII trial id": (
        lambda t: ["lineage", lineage_yaml(t), "--results", lake(t), "--trial", "tëst"],
        "trial id 'tëst' is not allowed", "starting with a letter or digit"),
    "read-only lake": (
        lambda t: ["lineage", lineage_yaml(t), "--results", "/sys/study-lake"],
        "results lake /sys/study-lake is not writable", "pass --results"),
    "batch larger than the training split": (
        lambda t: ["lineage", lineage_yaml(t, train={"batch_size": 5000}), "--results", lake(t)],
        "train.batch_size 5000 is larger than synthetic's training split (900 examples)", "lower train.batch_size"),
    "an empty when: list": (
        lambda t: ["tune", study_yaml(t, search={
            "train.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2},
            "rewind_iteration": {"type": "int", "low": 0, "high": 20, "when": {"strategy": []}}})],
        "search.rewind_iteration.when.strategy is an empty list", "list the values"),
    "a float grid with step 0": (
        lambda t: ["tune", study_yaml(t, sampler="grid", search={
            "prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.5, "step": 0}})],
        "search.prune.rates.fc.step must be > 0", "positive step"),
    "a study lake on a URL": (
        lambda t: ["tune", study_yaml(t, storage={"results": "s3://bucket/lake"})],
        "is a URL", "shared-volume path"),
    "a study lake on a read-only file system": (
        lambda t: ["tune", study_yaml(t, storage={"results": "/sys/study-lake"})],
        "results lake /sys/study-lake is not writable", "pass --results"),
    "compact on a missing lake": (
        lambda t: ["compact", str(t / "no-lake"), "--study", "s"], "no results lake at", "lake's root folder"),
    "stall_timeout_s of zero": (
        lambda t: ["tune", study_yaml(t, stall_timeout_s=0)], "stall_timeout_s must be > 0", "null for no limit"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_naming_the_fix_and_writes_nothing(case, tmp_path, capsys):
    argv, problem, fix = CASES[case]
    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert problem in err and fix in err, err
    assert not (tmp_path / "lake").exists()


def test_compact_of_an_unknown_study_names_the_ones_there(tmp_path, capsys):
    assert main(["lineage", lineage_yaml(tmp_path, rounds=1), "--results", lake(tmp_path), "--quiet",
                 "--threads", "1", "--study", "known"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    assert main(["compact", lake(tmp_path), "--study", "unknown"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "study 'unknown' has no rounds" in err and "studies there: known" in err
    assert sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet")) == before


@pytest.mark.parametrize("url", ["postgresql://study:hunter2@127.0.0.1:{port}/optuna",
                                 "sqlite:////nonexistent/dir/optuna.db"])
def test_an_unreachable_optuna_database_fails_before_ray_and_hides_the_password(url, tmp_path, capsys):
    import sys

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
    assert err.count("\n") == 1 and "tune storage s3://studies/tune" in err and "unreachable" in err, err
    assert "s3cr3t-key" not in err
