from __future__ import annotations

import contextlib
import dataclasses
import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# Tests that share something expensive run on one pytest-xdist worker, in file order: the app's
# lake (two real Ray studies) is built once, and test_tune's local Ray is kept from test to test.
# Grouped by file (the controller sees test ids only; pytest 9 ignores xdist's xdist_group ids).
SHARED_FIXTURES = {"app_lake": "the app's lake", "local_ray": "test_tune's Ray"}
SHARED_FILES = {
    "tests/test_app.py": "app_lake",
    "tests/test_app_browser.py": "app_lake",
    "tests/test_findings.py": "app_lake",
    "tests/test_incremental.py": "app_lake",
    "tests/test_report.py": "app_lake",
    "tests/test_tune.py": "local_ray",
}


def pytest_collection_modifyitems(config, items):
    """A test that uses a shared fixture from a file outside its group would build it again."""
    for item in items:
        for name in SHARED_FIXTURES:
            if name in getattr(item, "fixturenames", ()) and SHARED_FILES.get(_file_of(item.nodeid)) != name:
                raise pytest.UsageError(f"{item.nodeid} uses {name}: add its file to SHARED_FILES in tests/conftest.py")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup: each test on its own, but the files of SHARED_FILES one group each."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_FILES.get(_file_of(nodeid), nodeid)

    return SharedFixtureScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Tell `local_ray` (tests/test_tune.py) whether the next test asks for it too: a Ray
    started and stopped once for a run of such tests saves ~5 s each."""
    item.next_uses_local_ray = nextitem is not None and "local_ray" in getattr(nextitem, "fixturenames", ())


@pytest.fixture(autouse=True)
def _piped_terminal(monkeypatch):
    """The CLI's tables as a pipe sees them unless a test sets COLUMNS: whatever width the shell
    (or a pytest-xdist worker, which gets COLUMNS=80) hands the run."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Staged datasets go to a per-session cache, never the user's home."""
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "study-cache"))
    monkeypatch.delenv("STUDY_DATA_DIR", raising=False)


def synthetic_spec_dict(**overrides) -> dict:
    base = {
        "model": "lenet_300_100",
        "dataset": "synthetic",
        "strategy": "imp",
        "rounds": 3,
        "seed": 0,
        "train": {"lr": 1.0e-3, "iterations": 60, "eval_every": 20, "batch_size": 32},
        "data": {"validation_size": 300, "synthetic_size": 1200},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


@pytest.fixture
def make_spec():
    from study.engine.spec import lineage_spec_from_dict

    return lambda **kw: lineage_spec_from_dict(synthetic_spec_dict(**kw))


def _app_study(name, root, **kw):
    from study.search.study_spec import StudySpec
    from study.typed_yaml import build

    raw = {
        "name": name,
        "base": synthetic_spec_dict(rounds=2),
        "sampler": "random",
        "max_concurrent": 2,
        "budget": {"num_samples": 4},
        "storage": {"results": str(root)},
        "search": {
            "strategy": {"type": "categorical", "choices": ["imp", "random_reinit"]},
            "prune.rates.fc": {"type": "float", "low": 0.2, "high": 0.6},
        },
    }
    raw.update(kw)
    spec = build(StudySpec, raw, "study")
    spec.validate()
    return spec


@pytest.fixture(scope="session")
def app_lake(tmp_path_factory):
    """A small real lake for the app: engine-written lineages and two real Ray studies."""
    import ray

    from study.engine.lineage import RunContext
    from study.engine.spec import lineage_spec_from_dict
    from study.lake.recorder import run_to_lake
    from study.search.tune import run_study

    root = tmp_path_factory.mktemp("applake")
    for seed in (0, 1):  # two replicates of one configuration per strategy: bands over seeds
        for strategy in ("imp", "random_prune"):
            branches = ["random_reinit"] if strategy == "imp" else []  # paired controls off the IMP trunk
            run_to_lake(
                lineage_spec_from_dict(synthetic_spec_dict(strategy=strategy, seed=seed, rounds=3, branches=branches)),
                root,
                study="compare",
                context=RunContext(threads=1),
            )
    for seed in (0, 1):  # instability at two rewind points: the app grows its Stability page
        for k in (0, 20):
            run_to_lake(
                lineage_spec_from_dict(
                    synthetic_spec_dict(seed=seed, rounds=2, rewind_iteration=k, instability={"rounds": [0, 2]})
                ),
                root,
                study="stability",
                context=RunContext(threads=1),
            )
    for model in ("onlstm_lm", "lstm_lm"):  # sequence models: the app grows its Sequence models page
        run_to_lake(
            lineage_spec_from_dict(
                {
                    "model": model,
                    "dataset": "pcfg",
                    "rounds": 2,
                    "prune": {"scope": "global", "rate": 0.3},
                    "chance_margin": None,
                    "model_args": {"embedding": 16, "hidden": 32, "layers": 2, "chunk_size": 4},
                    "train": {"lr": 3e-3, "batch_size": 16, "iterations": 30, "eval_every": 15},
                    "data": {"synthetic_size": 400, "validation_size": 60},
                }
            ),
            root,
            study="sequences",
            context=RunContext(threads=1),
        )
    run_to_lake(  # a classifier of logical formulas: accuracy per operator count
        lineage_spec_from_dict(
            {
                "model": "onlstm_classifier",
                "dataset": "logical_inference",
                "rounds": 1,
                "chance_margin": None,
                "model_args": {"embedding": 8, "hidden": 16, "layers": 2, "chunk_size": 4},
                "train": {"lr": 3e-3, "batch_size": 16, "iterations": 10, "eval_every": 10},
                "data": {"synthetic_size": 200, "validation_size": 120},
            }
        ),
        root,
        study="sequences",
        context=RunContext(threads=1),
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_study(_app_study("searched", root, seeds=[0, 1], budget={"num_samples": 4}))
        run_study(
            _app_study(
                "paretos",
                root,
                objective={"name": "pareto"},
                sampler="nsga2",
                search={
                    "prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.7},
                    "rounds": {"type": "int", "low": 1, "high": 3},
                },
            )
        )
    finally:
        ray.shutdown()
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_cluster(head_cpus: int, worker_cpus: int):
    """A two-node Ray cluster on loopback: `ray start --head --block` plus `ray start --address
    --block`, each in a process group of its own. Yields the address; afterwards kills those two
    groups only (`ray stop` would stop every Ray of this machine, other test runs' included).
    Its own --temp-dir keeps it out of /tmp/ray/ray_current_cluster, where any other process's
    `ray.init()` would find it and join it."""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    import ray

    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="ray-lb-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    nodes: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        nodes.append(
            subprocess.Popen(
                [ray_bin, "start", *args, *common],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def wait_for(alive: int) -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert all(n.poll() is None for n in nodes), "a `ray start` exited"
            status = subprocess.run(
                [ray_bin, "status", f"--address={address}"], env=env, capture_output=True, text=True, timeout=60
            )
            if status.returncode == 0 and status.stdout.count(" node_") >= alive:
                return
            time.sleep(1)
        raise TimeoutError(f"the loopback cluster at {address} did not reach {alive} nodes")

    try:
        start("--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
              f"--num-cpus={head_cpus}")  # fmt: skip
        wait_for(1)
        start(f"--address={address}", f"--num-cpus={worker_cpus}")
        wait_for(2)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        deadline = time.time() + 3
        for node in reversed(nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(max(0.1, deadline - time.time()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)  # what SIGTERM left of the group (Ray's monitor lingers)
            node.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def raw_rows(lake, table="rounds", study=None):
    """Every row of every Parquet file of a table, read one file at a time: no reader, no
    de-duplication."""
    import pyarrow.parquet as pq

    base = lake / table if study is None else lake / table / f"study={study}"
    return [row for path in sorted(base.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def run_capturing(spec, **kw):
    """Run a lineage and keep, per round, the mask and the weights it was reset to."""
    from study.engine.lineage import LineageHooks, RunContext, run_lineage

    resets = {}

    def on_reset(round_, model, mask):
        resets.setdefault(
            round_,
            ({n: m.clone() for n, m in mask.items()}, {k: v.detach().clone() for k, v in model.state_dict().items()}),
        )

    results = run_lineage(spec, hooks=LineageHooks(on_reset=on_reset), context=RunContext(threads=1), **kw)
    return results, resets


def round_stamps(lake):
    """'<trial>-r<round>' -> when its row was written, for every round row in the raw files (per-round
    and folded, one file at a time; a file folded away between listing and reading is skipped)."""
    import pyarrow.parquet as pq

    stamps = {}
    for path in sorted((lake / "rounds").rglob("*.parquet")):
        try:
            rows = pq.read_table(path, columns=["trial_id", "round", "written_at"]).to_pylist()
        except (FileNotFoundError, OSError):
            continue
        for r in rows:
            stamps[f"{r['trial_id']}-r{r['round']:03d}"] = r["written_at"].isoformat()
    return stamps


def kill_once_and_rerun(argv, env, lake, min_round_files=3, timeout=240, after_kill=None):
    """Start `argv`, SIGKILL it once `min_round_files` round rows have landed, call `after_kill()`,
    run it again to the end; returns the second run (a CompletedProcess)."""
    import signal
    import subprocess
    import time

    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while len(round_stamps(lake)) < min_round_files:
        assert first.poll() is None, first.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "timed out waiting for rounds"
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(2)
    if after_kill:
        after_kill()
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=2 * timeout)
    assert again.returncode == 0, again.stderr[-3000:]
    return again


def assert_study_complete(lake, study, rounds, trials=4):
    """From the raw files (one at a time, no de-duplicating reader): exactly `trials` lineages,
    all finished, each with exactly one row per round in `rounds`."""

    rows = raw_rows(lake, "rounds", study)
    keys = [(r["trial_id"], r["round"]) for r in rows]
    assert len(keys) == len(set(keys)), "no duplicate rows"
    lineages = raw_rows(lake, "lineages", study)
    assert len(lineages) == trials and {r["status"] for r in lineages} == {"finished"}, lineages
    assert all({k[1] for k in keys if k[0] == r["trial_id"]} == set(rounds) for r in lineages)
    assert len(keys) == trials * len(rounds)
    return lineages


requires_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(FASHION_DIR), reason="apt-get install dataset-fashion-mnist"
)


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A real S3-compatible server (moto in server mode) on 127.0.0.1 that checks credentials:
    `env` holds the endpoint and a key pair allowed to use `bucket`."""

    endpoint: str
    bucket: str
    env: dict[str, str]

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def user(self, name: str, actions: list[str]) -> dict[str, str]:
        """A new IAM user allowed only `actions`; its keys as environment variables."""
        import json

        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix`, read with boto3 (not through the lake's own store), but
        the empty folder markers ('.../') pyarrow leaves where it deleted a file."""
        s3 = self.client()
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for o in page.get("Contents", [])
            if not (o["Key"].endswith("/") and o["Size"] == 0)
        ]
        return {k: s3.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}

    def rows(self, prefix: str) -> list[dict]:
        """Every row of every Parquet object under `prefix`, one object at a time (no reader, no
        de-duplication)."""
        import io

        import pyarrow.parquet as pq

        return [
            row
            for key, body in sorted(self.objects(prefix).items())
            if key.endswith(".parquet")
            for row in pq.read_table(io.BytesIO(body)).to_pylist()
        ]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free loopback port, with IAM checks on after the setup requests
    (a bucket, a user, its key and a policy)."""
    import json
    import subprocess
    import sys
    import time

    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        setup = {"endpoint_url": endpoint, "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        s3 = boto3.client("s3", region_name="us-east-1", **setup)
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="lake")
                break
            except Exception:
                assert server.poll() is None, "moto_server exited"
                time.sleep(0.1)
        iam = boto3.client("iam", region_name="us-east-1", **setup)
        iam.create_user(UserName="study")
        key = iam.create_access_key(UserName="study")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="study", PolicyName="lake", PolicyDocument=json.dumps(policy))
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_REGION": "us-east-1",
        }
        yield S3Server(endpoint, "lake", env)
    finally:
        server.terminate()
        server.wait(10)
        log.close()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server's endpoint and credentials in this process's environment."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


@dataclasses.dataclass(frozen=True)
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with password authentication."""

    port: int
    password: str

    @property
    def url(self) -> str:
        """The URL as a study writes it: the password from $OPTUNA_DB_PASSWORD."""
        return f"postgresql://optuna:${{OPTUNA_DB_PASSWORD}}@127.0.0.1:{self.port}/postgres"


def _postgres_bin(name: str) -> str:
    import glob
    import shutil

    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(f"{name} not found: run `make setup` (it installs Debian's PostgreSQL)")
    return found


@pytest.fixture(scope="session")
def postgres():
    """`initdb` + `pg_ctl start` on a free port (as the postgres user when the tests run as root,
    which PostgreSQL refuses to be); stopped at the end of the session."""
    import secrets
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="study-pg-"))  # not under pytest's root-only folder: postgres reads it
    data, password = base / "data", "pw@:/%" + secrets.token_hex(8)  # the characters a URL would mangle
    (base / "pwfile").write_text(password + "\n")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pwfile", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *as_user,
            _postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "optuna",
            "--auth=scram-sha-256",
            f"--pwfile={base / 'pwfile'}",
            "--no-sync",
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = _postgres_bin("pg_ctl")
    subprocess.run(
        [*as_user, ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield Postgres(port, password)
    finally:
        subprocess.run([*as_user, ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


EXAMPLE_PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "plugin")


@pytest.fixture
def plugin_registries():
    """What plugins register during a test is gone after it: the registries (and the plugin
    modules, so the next import registers again) as they were."""
    import sys

    from study.analysis import objectives
    from study.engine import registry
    from study.engine.branches import BRANCHES
    from study.engine.data import DATASETS
    from study.engine.models import MODELS
    from study.engine.strategies import STRATEGIES

    held = [MODELS, DATASETS, STRATEGIES, BRANCHES, objectives.OBJECTIVES, registry._SOURCES,
            objectives._PLUGIN_OBJECTIVES]  # fmt: skip
    saved = [dict(r) for r in held]
    modules = set(sys.modules)
    yield
    for registry_, before in zip(held, saved, strict=True):
        registry_.clear()
        registry_.update(before)
    for name in set(sys.modules) - modules:
        if name.split(".")[0] in ("study_example", "study_ep_demo", "userplugin"):
            del sys.modules[name]


@pytest.fixture
def example_plugin_path(monkeypatch, plugin_registries):
    """examples/plugin importable in this process (as a researcher's project folder is)."""
    monkeypatch.syspath_prepend(EXAMPLE_PLUGIN)
    return EXAMPLE_PLUGIN
