"""The lake on a real S3-compatible server (moto, started on 127.0.0.1 with credential checks) and
Optuna on a real PostgreSQL cluster (initdb/pg_ctl), both started by the tests; no secret is
ever written down."""

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import free_port, synthetic_spec_dict

from study.engine.checkpoint import CHECKPOINT_FILE
from study.engine.lineage import RunContext
from study.engine.spec import lineage_spec_from_dict
from study.lake.compact import compact
from study.lake.files import scratch_dir, write_round
from study.lake.reader import read_lineages, read_rounds
from study.lake.recorder import LakeLineage, run_to_lake

pytestmark = pytest.mark.timeout(600)
CLI = [sys.executable, "-m", "study.cli"]


@pytest.mark.numerics
def test_a_lineage_writes_the_same_lake_to_s3_as_to_a_folder(s3, tmp_path):
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2))
    lid, strategy = spec.lineage_id(), spec.strategy
    root = "s3://lake/same"
    remote = run_to_lake(spec, root, study="s", context=RunContext(threads=1))
    local = run_to_lake(spec, tmp_path, study="s", context=RunContext(threads=1))
    assert [r.round for r in remote] == [0, 1, 2]
    assert not scratch_dir(root, "s", lid).exists(), "a finished lineage leaves nothing on the node's disk"
    assert [(r.round, r.remaining_pct, r.val_acc, r.test_acc) for r in remote] == [
        (r.round, r.remaining_pct, r.val_acc, r.test_acc) for r in local
    ]
    # the objects, listed and read with boto3: folded rounds and masks, a lineage row, the checkpoint
    objects = s3.objects("same/")
    assert sorted(objects) == [
        f"same/_checkpoints/study=s/{lid}/{CHECKPOINT_FILE}",
        f"same/lineages/study=s/strategy={strategy}/{lid}.parquet",
        f"same/masks/study=s/strategy={strategy}/{lid}.rounds.parquet",
        f"same/rounds/study=s/strategy={strategy}/{lid}.rounds.parquet",
        f"same/weights/study=s/strategy={strategy}/{lid}/theta_k.pt",  # a ticket's starting weights
    ]
    rows = pq.read_table(io.BytesIO(objects[f"same/rounds/study=s/strategy={strategy}/{lid}.rounds.parquet"]))
    assert rows["round"].to_pylist() == [0, 1, 2]
    assert rows["val_acc"].to_pylist() == [r.val_acc for r in local]
    drop = ["written_at", "wall_seconds"]  # when and how long: the only columns that may differ
    assert read_rounds(root).table.drop(drop).equals(read_rounds(tmp_path).table.drop(drop))
    lineage = read_lineages(root).table.to_pylist()
    assert [(r["status"], r["rounds_done"]) for r in lineage] == [("finished", 3)]

    # a retried round replaces its own object; a corrupt object is skipped and named
    row = {**read_rounds(root).table.to_pylist()[0], "trial_id": "retry", "round": 0, "val_acc": 0.1}
    write_round(root, row)
    write_round(root, {**row, "val_acc": 0.2})
    keys = [k for k in s3.objects("same/rounds/") if "/retry-" in k]
    assert keys == [f"same/rounds/study=s/strategy={strategy}/retry-r000.parquet"]
    s3.client().put_object(
        Bucket="lake", Key=f"same/rounds/study=s/strategy={strategy}/junk-r000.parquet", Body=b"PAR1 no"
    )
    read = read_rounds(root)
    assert read.skipped and read.skipped[0].startswith(f"s3://lake/same/rounds/study=s/strategy={strategy}/junk-r000")
    assert {r["val_acc"] for r in read.table.to_pylist() if r["trial_id"] == "retry"} == {0.2}

    # `study results` and `compact` on the bucket
    s3.client().delete_object(Bucket="lake", Key=f"same/rounds/study=s/strategy={strategy}/junk-r000.parquet")
    shown = subprocess.run([*CLI, "results", root], capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert shown.returncode == 0 and "results in s3://lake/same" in shown.stdout and strategy in shown.stdout
    assert compact(root, "s") == {strategy: 4}
    assert [k.split("/")[-1][:8] for k in s3.objects("same/rounds/")] == ["compact-"]
    assert read_rounds(root).table.num_rows == 4


@pytest.mark.numerics
def test_two_s3_servers_with_one_bucket_name_keep_their_node_scratch_apart(monkeypatch):
    """A node's scratch folder for an s3:// lineage is keyed by the endpoint too: two test runs (or
    two object stores) with a bucket of one name never share a checkpoint on a node's disk."""
    scratch = {}
    for endpoint in ("http://127.0.0.1:9000", "http://127.0.0.1:9001"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        scratch[endpoint] = scratch_dir("s3://lake/same", "s", "t")
    assert len(set(scratch.values())) == 2
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9002")  # the S3-specific variable wins
    assert scratch_dir("s3://lake/same", "s", "t") not in scratch.values()


def test_an_s3_lineage_resumes_on_another_node_from_the_lakes_checkpoint(s3):
    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=2))
    root, lid = "s3://lake/resume", spec.lineage_id()
    first = LakeLineage(spec, root, study="s", context=RunContext(threads=1)).open()
    assert next(first).round == 0
    del first
    shutil.rmtree(scratch_dir(root, "s", lid))  # another node: nothing on its disk
    again = LakeLineage(spec, root, study="s", context=RunContext(threads=1)).open()
    assert [r.round for r in again.previous] == [0]
    assert [r.round for r in again] == [1, 2]
    # resume is exact: the same rounds as one uninterrupted run
    whole = run_to_lake(spec, "s3://lake/resume-whole", study="s", context=RunContext(threads=1))
    resumed = sorted((r["round"], r["val_acc"]) for r in read_rounds(root).table.to_pylist())
    assert resumed == [(r.round, r.val_acc) for r in whole]


def study_yaml(tmp_path, name, results, optuna_url, samples=2, rounds=2, iterations=300):
    raw = {
        "name": name,
        "base": synthetic_spec_dict(rounds=rounds, train={"iterations": iterations, "eval_every": 100}),
        "search": {"train.lr": {"type": "log_float", "low": 3e-4, "high": 3e-3}},
        "sampler": "random",
        "budget": {"num_samples": samples},
        "max_concurrent": 2,
        "storage": {"results": results, "tune": str(tmp_path / "tune"), "optuna": optuna_url},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study": raw}))
    return path


def optuna_values(postgres, name):
    """Optuna's trials, read straight from the database (not through the product)."""
    url = f"postgresql+psycopg2://optuna:{quote(postgres.password, safe='')}@127.0.0.1:{postgres.port}/postgres"
    trials = optuna.load_study(study_name=name, storage=url).trials
    return {t.number: (t.state.name, t.values) for t in trials}


def test_a_study_on_s3_and_postgres_survives_a_killed_driver_and_leaks_no_password(s3, postgres, tmp_path):
    """A driver is killed mid-study; a second driver resumes it from the bucket and the database.
    No duplicate rows, every trial complete once in Optuna, and the planted password is nowhere:
    not in the bucket (lake and Tune's experiment), the CLI output, Ray's logs or the k8s render."""
    started = time.time()
    root = "s3://lake/killed"
    path = study_yaml(tmp_path, "killed", root, postgres.url, samples=2, rounds=2, iterations=600)
    path = Path(str(path))
    raw = yaml.safe_load(path.read_text())
    raw["study"]["storage"]["tune"] = "s3://lake/killed-tune"
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OPTUNA_DB_PASSWORD": postgres.password}
    first = subprocess.Popen([*CLI, "tune", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len([k for k in s3.objects("killed/rounds/")]) < 2:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "timed out waiting for rounds"
        time.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)
    out1, err1 = first.communicate()
    time.sleep(2)
    again = subprocess.run([*CLI, "tune", str(path)], env=env, capture_output=True, text=True, timeout=480)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "best configuration" in again.stdout

    rows = s3.rows("killed/rounds/")
    keys = [(r["trial_id"], r["round"]) for r in rows]
    assert len(keys) == 6 == len(set(keys)), "2 trials x 3 rounds, no duplicate rows"
    lineages = s3.rows("killed/lineages/")
    assert len(lineages) == 2 and {r["status"] for r in lineages} == {"finished"}
    assert not s3.objects("killed/_checkpoints/"), "a finished trial's resume state is removed"
    held = optuna_values(postgres, "killed")
    assert sorted(held) == [0, 1] and {state for state, _ in held.values()} == {"COMPLETE"}

    # the app shows the study from the bucket
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.session_state["root"] = root
    at.run()
    assert not at.exception and not at.error
    assert at.multiselect(key="filter_study").options == ["killed"]
    assert len(at.dataframe) and len(at.dataframe[0].value), "the strategies page tabulates the bucket's rounds"

    # no secret written down anywhere, as it is or URL-encoded
    secrets = [postgres.password.encode(), quote(postgres.password, safe="").encode()]
    leaks = [k for k, body in s3.objects("").items() if any(s in body for s in secrets)]
    texts = {"first run": out1 + err1, "second run": (again.stdout + again.stderr).encode()}
    leaks += [name for name, text in texts.items() if any(s in text for s in secrets)]
    for folder in (tmp_path, Path("/tmp/ray")):
        for file in folder.rglob("*") if folder.exists() else []:
            if file.is_file() and file.stat().st_mtime >= started - 1:
                try:
                    if any(s in file.read_bytes() for s in secrets):
                        leaks.append(str(file))
                except OSError:
                    pass
    assert not leaks, leaks


def test_bad_storage_fails_in_one_line_before_anything_is_written(s3, postgres, tmp_path, monkeypatch, capsys):
    from study.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(synthetic_spec_dict(rounds=1)))

    def fails(argv, **env):
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value) if value is not None else patch.delenv(name, raising=False)
            assert main(argv) == 2
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1, err
        for secret in (postgres.password, quote(postgres.password, safe=""), s3.env["AWS_SECRET_ACCESS_KEY"]):
            assert secret not in out + err
        return err

    def lineage(root, **env):
        return fails(["lineage", str(spec), "--results", root, "--quiet"], **env)

    down = lineage("s3://lake/bad", AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    assert "does not answer" in down and "AWS_ENDPOINT_URL" in down
    missing = lineage("s3://no-such-bucket/x")
    assert "bucket no-such-bucket does not exist" in missing and "create it" in missing
    for reading in (["results", "s3://no-such-bucket/x"], ["compact", "s3://no-such-bucket/x", "--study", "s"]):
        assert "bucket no-such-bucket does not exist" in fails(reading), reading
    wrong = lineage("s3://lake/bad", AWS_SECRET_ACCESS_KEY="wrong")
    assert "refused the credentials" in wrong and "AWS_ACCESS_KEY_ID" in wrong
    keyed = lineage("s3://AKIA:Planted99@lake/bad")
    assert "carries credentials" in keyed and "Planted99" not in keyed
    assert not s3.objects("bad/") and not s3.objects("x/")

    # a database that refuses the connection, a wrong password, an unset one, one written in the YAML
    lake = tmp_path / "lake"
    cases = {
        "refused": (f"postgresql://optuna:${{OPTUNA_DB_PASSWORD}}@127.0.0.1:{free_port()}/postgres", {}, "unreachable"),
        "wrong": (postgres.url, {"OPTUNA_DB_PASSWORD": "wrong-password"}, "unreachable"),
        "unset": (postgres.url, {"OPTUNA_DB_PASSWORD": None}, "is not set"),
        "plain": (
            f"postgresql://optuna:{quote(postgres.password, safe='')}@127.0.0.1:{postgres.port}/postgres",
            {},
            "plain text",
        ),
    }
    for name, (url, env, says) in cases.items():
        path = study_yaml(tmp_path, f"bad-{name}", str(lake), url)
        err = fails(["tune", str(path)], **{"OPTUNA_DB_PASSWORD": postgres.password, **env})
        assert says in err, (name, err)
    assert not lake.exists(), "nothing written"


def test_two_drivers_never_run_one_study_and_two_studies_share_one_database(postgres, tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OPTUNA_DB_PASSWORD": postgres.password}
    a = study_yaml(tmp_path, "pair-a", str(tmp_path / "lake"), postgres.url, iterations=900)
    b = study_yaml(tmp_path, "pair-b", str(tmp_path / "lake"), postgres.url, rounds=1, iterations=60)
    first = subprocess.Popen([*CLI, "tune", str(a)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((tmp_path / "lake").glob("rounds/study=pair-a/*/*")):
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.3)
    second = subprocess.run([*CLI, "tune", str(a)], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "being run by another driver" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and postgres.password not in second.stderr
    other = subprocess.run([*CLI, "tune", str(b)], env=env, capture_output=True, text=True, timeout=480)
    assert other.returncode == 0, other.stderr[-3000:]
    out, err = first.communicate(timeout=480)
    assert first.returncode == 0, err[-3000:]
    for name, rounds in (("pair-a", 3), ("pair-b", 2)):
        held = optuna_values(postgres, name)
        assert sorted(held) == [0, 1] and {s for s, _ in held.values()} == {"COMPLETE"}, held
        rows = read_rounds(tmp_path / "lake", name).table.to_pylist()
        assert len(rows) == 2 * rounds


def test_secrets_in_urls_are_encoded_when_expanded_and_found_when_planted(monkeypatch):
    """Hand-written expectations: '@' is %40, ':' %3A, '/' %2F, '%' %25 in the user:password
    part and the query; the host part is left as written."""
    from study.errors import SpecError
    from study.secrets import expand_env, plain_secret, redact, scrub

    monkeypatch.setenv("P", "a@b:c/d%e")
    monkeypatch.setenv("HOST", "db.example:5432")
    url = expand_env("postgresql://u:${P}@${HOST}/optuna?sslpassword=$P", "x")
    assert url == "postgresql://u:a%40b%3Ac%2Fd%25e@db.example:5432/optuna?sslpassword=a%40b%3Ac%2Fd%25e"
    assert redact(url) == "postgresql://u:***@db.example:5432/optuna?sslpassword=***"
    echoed = "could not connect as u with a@b:c/d%e or a%40b%3Ac%2Fd%25e"
    assert "a@b" not in scrub(echoed, url) and "%40" not in scrub(echoed, url)
    assert plain_secret("postgresql://u:${P}@h/db") is None and plain_secret("postgresql://u:$P@h/db?token=$T") is None
    assert plain_secret("postgresql://u:pw@h/db") == "password"
    assert plain_secret("postgresql://u@h/db?password=x&a=1") == "password= parameter"
    assert plain_secret("postgresql://u:${P}x@h/db") == "password", "a literal suffix is a literal password"
    assert plain_secret("postgresql://u:pa?ss@h/db") == "password" and redact("postgresql://u:pa?ss@h/db") == (
        "postgresql://u:***@h/db"
    ), "a '?' in a password does not start the query"
    monkeypatch.delenv("P")
    with pytest.raises(SpecError, match=r"uses \$\{P\}, which is not set"):
        expand_env("postgresql://u:${P}@h/db", "optuna storage")


def test_the_driver_lock_admits_one_driver_per_study_and_dies_with_it(postgres, tmp_path, monkeypatch):
    from study.errors import SpecError
    from study.search.driver_lock import driver_lock
    from study.search.optuna_io import driver_url

    monkeypatch.setenv("OPTUNA_DB_PASSWORD", postgres.password)
    journal = str(tmp_path / "optuna" / "s.journal")
    for url, connect in ((postgres.url, driver_url(postgres.url)), (journal, journal)):
        with driver_lock("s", url, connect):
            with pytest.raises(SpecError, match="being run by another driver"), driver_lock("s", url, connect):
                pass
            with driver_lock("other", url, connect):  # another study: its own lock
                pass
        with driver_lock("s", url, connect):  # released when the first driver ended
            pass


def test_an_object_the_store_would_not_serve_is_retried_never_skipped(s3, monkeypatch):
    """Keys that may list but not read the bucket: the app's reader raises (one line in the app)
    instead of filing the objects as unreadable for good; with keys that may read, the next
    refresh reads every row."""
    from study.lake.incremental import IncrementalLake

    spec = lineage_spec_from_dict(synthetic_spec_dict(rounds=1))
    root = "s3://lake/denied"
    run_to_lake(spec, root, study="s", context=RunContext(threads=1))
    lake = IncrementalLake(root)
    for name, value in s3.user("lister", ["s3:ListBucket"]).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(OSError, match="ACCESS_DENIED|AccessDenied|403"):
        lake.refresh()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, s3.env[name])
    reads, _ = lake.refresh()
    assert not reads["rounds"].skipped and reads["rounds"].table["round"].to_pylist() == [0, 1]


def test_an_interrupted_checkpoint_upload_leaves_the_previous_copy_whole(s3, tmp_path, monkeypatch):
    """pyarrow completes an S3 upload when its stream closes, even after an error: a checkpoint
    cut short must never replace the lake's copy (a Ctrl-C mid-upload, here after 1,000 bytes)."""
    from study.lake import store as store_module

    store = store_module.store_for("s3://lake/upload")
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    old.write_bytes(b"A" * 1000)
    new.write_bytes(b"B" * 50_000)
    store.put_file(old, "s3://lake/upload/lineage.pt")

    def cut_short(source, target, length):
        target.write(source.read(1000))
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.shutil, "copyfileobj", cut_short)
    with pytest.raises(KeyboardInterrupt):
        store.put_file(new, "s3://lake/upload/lineage.pt")
    assert s3.objects("upload/") == {"upload/lineage.pt": b"A" * 1000}, "the old copy, whole; no temp left"


def late_port_forward(target_port: int, delay_s: float) -> int:
    """A port that starts listening only after `delay_s` and then forwards every connection to
    127.0.0.1:`target_port`: a database pod that comes up after its driver."""
    import socket
    import threading

    port = free_port()

    def pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        time.sleep(delay_s)
        server = socket.create_server(("127.0.0.1", port))
        while True:
            client, _ = server.accept()
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return port


def test_the_driver_waits_for_a_database_that_comes_up_late_and_says_so_when_it_never_does(
    postgres, tmp_path, monkeypatch
):
    """STUDY_DB_WAIT_S (set on the head by `study k8s render`): a real PostgreSQL reached through
    a port that opens 3 s late is waited for; a port that never opens fails, in one line, once
    the wait is over."""
    from study.errors import SpecError
    from study.search.preflight import DB_WAIT_ENV, check_storage
    from study.search.study_spec import load_study_spec

    monkeypatch.setenv("OPTUNA_DB_PASSWORD", postgres.password)
    late = late_port_forward(postgres.port, delay_s=3.0)
    url = f"postgresql://optuna:${{OPTUNA_DB_PASSWORD}}@127.0.0.1:{late}/postgres"
    study = load_study_spec(study_yaml(tmp_path, "late-db", str(tmp_path / "lake"), url))
    monkeypatch.setenv(DB_WAIT_ENV, "0")
    with pytest.raises(SpecError, match="unreachable"):
        check_storage(study)  # no wait: the first refusal is the answer
    monkeypatch.setenv(DB_WAIT_ENV, "60")
    started = time.monotonic()
    check_storage(study)
    assert 2.0 <= time.monotonic() - started < 30, "waited for the port to open, then connected"
    never = f"postgresql://optuna:${{OPTUNA_DB_PASSWORD}}@127.0.0.1:{free_port()}/postgres"
    study = load_study_spec(study_yaml(tmp_path, "no-db", str(tmp_path / "lake"), never))
    monkeypatch.setenv(DB_WAIT_ENV, "2")
    started = time.monotonic()
    with pytest.raises(SpecError) as failed:
        check_storage(study)
    assert time.monotonic() - started >= 2.0
    message = str(failed.value)
    assert "unreachable" in message and "waiting 2 s" in message and DB_WAIT_ENV in message
    assert "\n" not in message and postgres.password not in message
    monkeypatch.setenv(DB_WAIT_ENV, "60")
    monkeypatch.setenv("OPTUNA_DB_PASSWORD", "wrong-password")
    started = time.monotonic()
    with pytest.raises(SpecError, match="unreachable"):
        check_storage(load_study_spec(study_yaml(tmp_path, "wrong-pw", str(tmp_path / "lake"), postgres.url)))
    assert time.monotonic() - started < 20, "a wrong password is not waited for"
    monkeypatch.setenv(DB_WAIT_ENV, "soon")
    with pytest.raises(SpecError, match="is not a number of seconds"):
        check_storage(study)
