"""Kubernetes manifests, tested offline: parse, project-owned semantic checks, strict
kubernetes-validate for core objects and every pod template, KubeRay v1.7.0 CRD schemas with
unknown fields rejected, the committed examples up to date, the Dockerfile's pins."""

import copy
import functools
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml

from study.deploy.k8s import (
    K8sOptions,
    app_objects,
    capacity_warning,
    dump,
    render,
    staging_objects,
    storage_objects,
    write_kustomization,
)
from study.deploy.k8s_checks import pod_templates, semantic_problems

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT.parent / "shared" / "kuberay-crds" / "v1.7.0"
SPACE = str(ROOT / "search_spaces/studies/fashion_mnist_demo.yaml")
K8S_VERSION = "1.37.0"
VARIANTS = {
    "gpu": {},
    "cpu-dev": {"profile": "cpu-dev"},
    "postgres-s3": {"postgres": "bundled", "tune_storage": "s3://bkt/tune", "gpus": 8},
    "s3-lake": {"results": "s3://bkt/lake", "s3_secret": "lake-keys", "s3_endpoint": "https://minio.example:9000"},
    "external-db": {
        "postgres": "postgresql://u@db.example:5432/optuna",
        "postgres_secret": "team-db",
        "existing_claim": "team-lake",
        "namespace": "studies",
    },
    "raycluster": {"kind": "raycluster", "profile": "cpu-dev"},
    "hardened": {
        "service_account": "studies",
        "auth_token_secret": "ray-token",
        "worker_cpus": 12,
        "worker_memory": "64Gi",
        "head_cpus": 4,
        "max_workers": 2,
    },
    "all-remote": {
        "results": "s3://bkt/lake",
        "tune_storage": "s3://bkt/tune",
        "postgres": "bundled",
        "s3_secret": "lake-keys",
        "existing_claim": None,
    },
}
IMAGE = "ghcr.io/acme/lottery-study:0.1.0"


def rendered(**kw):
    return render(SPACE, K8sOptions(image=IMAGE, **{"existing_claim": "team-lake", **kw}))


def every_object(**kw):
    """A study's objects with the lake's claim, the app and a staging job: all a namespace runs."""
    opts = K8sOptions(image=IMAGE, storage_class="nfs", existing_claim="team-lake", **kw)
    return [
        *storage_objects("team-lake", opts),
        *rendered(**kw),
        *app_objects(opts),
        *staging_objects("fashion_mnist", opts),
    ]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_manifests_parse_and_pass_the_semantic_checks(variant):
    objects = list(yaml.safe_load_all(dump(rendered(**VARIANTS[variant]))))
    assert objects and all(o["apiVersion"] and o["metadata"]["name"] for o in objects)
    assert semantic_problems(objects, ray.__version__) == []


def _job():
    return rendered()


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": "2"}),
            "head must schedule no trials",
        ),
        (lambda o: o[-1]["spec"]["rayClusterSpec"].update({"rayVersion": "2.9.0"}), "rayVersion"),
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
                "resources"
            ]["limits"].update({"nvidia.com/gpu": 0.5}),
            "whole number",
        ),
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(
                {"minReplicas": 3, "maxReplicas": 2}
            ),
            "minReplicas",
        ),
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][
                0
            ].update({"image": "ghcr.io/acme/lottery-study:0.2.0"}),
            "one tag everywhere",
        ),
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
                "volumeMounts"
            ][0].update({"mountPath": "/data"}),
            "one claim at one path",
        ),
        (lambda o: o[-1]["metadata"].update({"name": "study-" + "x" * 50}), "longer than 47"),
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["securityContext"].pop(
                "runAsNonRoot"
            ),
            "non-root user",
        ),
        (
            lambda o: o[-1]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
                "securityContext"
            ].update({"allowPrivilegeEscalation": True}),
            "no privilege escalation",
        ),
        (lambda o: o[-1]["spec"]["submitterPodTemplate"]["spec"].pop("securityContext"), "submitter: the pod must"),
        (lambda o: o[-1]["spec"]["rayClusterSpec"]["autoscalerOptions"].pop("securityContext"), "autoscaler sidecar"),
        (lambda o: o[-1]["spec"].update({"entrypoint": "python -m study.nonexistent tune x.yaml"}), "not importable"),
        (
            lambda o: o[0]["data"].update(
                {"study.yaml": o[0]["data"]["study.yaml"].replace("/mnt/lake/results", "/tmp/results")}
            ),
            "not on the shared volume",
        ),
    ],
)
def test_semantic_checks_catch_each_fault(mutate, expected):
    objects = copy.deepcopy(_job())
    mutate(objects)
    problems = semantic_problems(objects, ray.__version__)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_core_objects_and_pod_templates_pass_strict_kubernetes_validation(variant):
    objects = rendered(**VARIANTS[variant])
    if variant == "gpu":
        objects = every_object()
    for obj in objects:
        if obj["apiVersion"] in ("v1", "apps/v1", "batch/v1", "networking.k8s.io/v1"):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    templates = list(pod_templates(objects))
    assert len(templates) >= 2
    for _where, template in templates:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", **template.get("metadata", {})},
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_strict_validation_rejects_a_typo():
    pvc = storage_objects("team-lake", K8sOptions(storage_class="nfs"))[0]
    pvc["spec"]["acessModes"] = pvc["spec"].pop("accessModes")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pvc, K8S_VERSION, strict=True)


def _closed(schema):
    """The CRD schema with unknown fields rejected wherever an object lists its properties."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@functools.cache
def _load_crd_schema(filename):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((CRDS / filename).read_text(), Loader=loader)
    version = [v for v in crd["spec"]["versions"] if v["name"] == "v1"][0]
    return _closed(version["schema"]["openAPIV3Schema"])


def _crd_schema(filename):
    if not CRDS.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {CRDS} (they come with the project's shared/ folder)")
    return _load_crd_schema(filename)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rayjob_and_raycluster_validate_against_the_kuberay_crds(variant):
    schemas = {"RayJob": _crd_schema("ray.io_rayjobs.yaml"), "RayCluster": _crd_schema("ray.io_rayclusters.yaml")}
    ray_objects = [o for o in rendered(**VARIANTS[variant]) if o["kind"] in schemas]
    assert len(ray_objects) == 1
    for obj in ray_objects:
        jsonschema.validate(obj, schemas[obj["kind"]])


def test_crd_validation_rejects_unknown_fields():
    schema = _crd_schema("ray.io_rayjobs.yaml")
    job = [o for o in rendered() if o["kind"] == "RayJob"][0]
    job["spec"]["shutdownAfterJobFinish"] = job["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        jsonschema.validate(job, schema)
    job = [o for o in rendered() if o["kind"] == "RayJob"][0]
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, schema)


CLAIM = ["--existing-claim", "team-lake"]
EXAMPLES = {
    "lake-storage.yaml": ["storage", "team-lake", "--storage-class", "nfs-client"],
    "fashion-mnist-demo-gpu.yaml": ["render", "search_spaces/studies/fashion_mnist_demo.yaml", *CLAIM],
    "fashion-mnist-demo-cpu-dev.yaml": [
        "render",
        "search_spaces/studies/fashion_mnist_demo.yaml",
        "--profile",
        "cpu-dev",
        *CLAIM,
    ],
    "lenet300-mnist-paper-gpu-postgres.yaml": [
        "render",
        "search_spaces/studies/lenet300_mnist_paper.yaml",
        "--gpus",
        "8",
        "--postgres",
        "bundled",
        "--tune-storage",
        "s3://acme-studies/tune",
        *CLAIM,
    ],
    "raycluster-cpu-dev.yaml": [
        "render",
        "search_spaces/studies/fashion_mnist_demo.yaml",
        "--kind",
        "raycluster",
        "--profile",
        "cpu-dev",
        *CLAIM,
    ],
    "app.yaml": ["app", *CLAIM],
    "stage-fashion-mnist.yaml": ["stage-data", "fashion_mnist", *CLAIM],
}


def study_cli(*args: str) -> subprocess.CompletedProcess:
    """`study ARGS` in this process (the CLI's own paths; the subprocess tests below cover the
    installed entry point), its output captured."""
    import contextlib
    import io
    import os

    from study.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's own usage errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_committed_examples_match_a_fresh_render(name):
    args = EXAMPLES[name] + ([] if EXAMPLES[name][0] == "storage" else ["--image", IMAGE])
    out = study_cli("k8s", *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (ROOT / "k8s" / "examples" / name).read_text(), (
        f"k8s/examples/{name} is stale: re-render it with `study k8s {' '.join(args)}`"
    )


def _dockerfile_runs() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (ROOT / "k8s" / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _extra_requirements(dist: str, extras: set[str]) -> set[str]:
    """The distributions `dist[extras]` adds, from the installed package's own metadata."""
    import importlib.metadata
    import re

    names = set()
    for req in importlib.metadata.requires(dist) or []:
        marker = re.search(r'extra == "([^"]+)"', req)
        if marker and marker.group(1) in extras:
            names.add(re.split(r"[ ;<>=!~\[]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_image_installs_rays_dashboard_its_pins_and_runs_as_a_user():
    """KubeRay probes the dashboard agent and submits through the Jobs API: the image must install
    Ray with its default extras (aiohttp & co., per Ray's own metadata), pinned with tune."""
    import tomllib

    lines = _dockerfile_runs()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"ray[tune]=={ray.__version__}" in pyproject["dependencies"]
    (cluster,) = pyproject["optional-dependencies"]["cluster"]
    name, _, version = cluster.partition("==")
    extras = set(name.removeprefix("ray[").removesuffix("]").split(","))
    assert version == ray.__version__ and {"default", "tune"} <= extras, cluster
    dashboard = {"aiohttp", "aiohttp-cors", "prometheus-client", "opencensus", "grpcio"}
    assert dashboard <= _extra_requirements("ray", extras), "the image would start Ray's dashboard agent minimal"
    installs = [i for i, line in enumerate(lines) if line.startswith("RUN") and "pip install" in line]
    assert any('".[cluster]"' in lines[i] for i in installs), "the image installs the cluster extra"
    assert "torch==2.14.1 torchvision==0.29.1" in " ".join(lines)
    assert f"ray.__version__ == '{ray.__version__}'" in " ".join(lines)
    code = next(i for i, line in enumerate(lines) if line.startswith("COPY study"))
    deps = next(i for i in installs if '".[cluster]"' in lines[i])
    assert deps < code, "dependency layers come before the code"
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", (
        "runs as a numeric non-root user"
    )
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "results", "mutants", "tests"} <= set(ignored)


def test_bad_render_inputs_are_one_line_errors(tmp_path):
    for args, expected in (
        (["--image", "lottery-study"], "has no tag"),
        (["--tune-storage", "/local"], "s3://"),
        (["--gpus-per-worker", "0"], "whole GPUs"),
        (["--results", "s3://AKIA:Planted99@b/lake"], "carries credentials"),
        (["--postgres", "postgresql://u:Planted99@db:5432/optuna"], "--postgres-secret"),
        (["--postgres-secret", "db"], "external --postgres"),
        (["--operator-namespace", "kube.ray"], "is not a namespace name"),
        (["--db-wait", "-5"], "--db-wait must be"),
        (["--head-cpus", "0.5"], "invalid int value"),
        (["--max-workers", "3000000000"], "count pods"),
        (["--namespace", "Bad_NS"], "not a Kubernetes name"),
    ):
        out = study_cli("k8s", "render", SPACE, *args)  # in-process: each subprocess cost ~2.5 s
        assert out.returncode == 2 and expected in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert "Planted99" not in out.stdout + out.stderr and out.stdout == ""
    # the installed entry point, once: the same one line from a whole process, nothing on stdout
    out = subprocess.run(
        [sys.executable, "-m", "study.cli", "k8s", "render", SPACE, "--results", "s3://AKIA:Planted99@b/lake"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "carries credentials" in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "Planted99" not in out.stdout + out.stderr and out.stdout == ""
    # what no cluster can run: an image reference runtimes reject, a pod larger than any node (in-process CLI)
    for args, expected in (
        (["--image", "Lottery-Study:0.1.0"], "not an image reference"),
        (["--image", "ghcr.io/acme/lottery_study!:0.1.0"], "not an image reference"),
        (["--image", "ghcr.io/acme/lottery-study:"], "not an image reference"),
        (["--image", "ghcr.io/acme/lottery-study:-x"], "not an image reference"),
        (["--worker-cpus", "1000000"], "more than any node has"),
        (["--worker-memory", "99999999Ti"], "more than any node has"),
        (["--head-memory", "33Ti"], "more than any node has"),
        (["--gpus-per-worker", "17"], "more than any GPU node has"),
    ):
        out = study_cli("k8s", "render", SPACE, *CLAIM, *args)
        assert out.returncode == 2 and expected in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""
    for image in ("localhost:5000/acme/lottery-study:0.1.0", "Registry.Example:443/a/b__c-d.e:v1.0_rc-2",
                  f"ghcr.io/acme/lottery-study:0.1.0@sha256:{'ab' * 32}", "lottery-study:0.1.0"):  # fmt: skip
        assert K8sOptions(image=image).validate() is None
    refused = study_cli("k8s", "render", SPACE, *CLAIM, "--image", "repo/img:", "--out-dir", str(tmp_path / "out"))
    assert refused.returncode == 2 and not (tmp_path / "out").exists(), "nothing written"


def test_a_render_names_every_secret_by_reference_only():
    """Database password and S3 keys reach the pods from Secrets; the manifests hold no value of
    them, and the ConfigMap's URL names the password as ${OPTUNA_DB_PASSWORD}."""
    objects = rendered(
        results="s3://bkt/lake",
        s3_secret="lake-keys",
        postgres="postgresql://u@db:5432/optuna",
        postgres_secret="team-db",
    )
    assert not [o for o in objects if o["kind"] == "Secret"]
    config = yaml.safe_load([o for o in objects if o["kind"] == "ConfigMap"][0]["data"]["study.yaml"])["study"]
    assert config["storage"]["optuna"] == "postgresql://u:${OPTUNA_DB_PASSWORD}@db:5432/optuna"
    assert config["storage"]["results"] == "s3://bkt/lake"
    cluster = [o for o in objects if o["kind"] == "RayJob"][0]["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    workers = [g["template"]["spec"]["containers"][0]["env"] for g in cluster["workerGroupSpecs"]]
    refs = lambda env: {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}  # noqa: E731
    keys = {k: {"name": "lake-keys", "key": k} for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    assert refs(head) == {**keys, "OPTUNA_DB_PASSWORD": {"name": "team-db", "key": "password"}}
    assert all(refs(env) == keys for env in workers), "every worker writes the lake: each gets the S3 keys"


def test_render_refuses_a_trial_that_fits_no_worker_group_and_tells_the_driver_the_groups(tmp_path):
    space = tmp_path / "quarter.yaml"
    raw = yaml.safe_load((ROOT / SPACE).read_text())
    raw["study"]["resources"] = {"cpu": 1, "gpu": 0.25}
    space.write_text(yaml.safe_dump(raw))
    out = subprocess.run(
        [sys.executable, "-m", "study.cli", "k8s", "render", str(space), "--profile", "cpu-dev", *CLAIM],
        capture_output=True,
        text=True,
    )
    # two seeds of a quarter GPU each train packed (auto): their task needs half a GPU
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "a task of 2 packed lineages needs 1 CPU and 0.5 GPU" in out.stderr
    assert "profile cpu-dev" in out.stderr and out.stdout == ""
    objects = render(str(space), K8sOptions(image=IMAGE, gpus_per_worker=2, existing_claim="team-lake"))
    job = [o for o in objects if o["kind"] == "RayJob"][0]
    env = {
        e["name"]: e.get("value")
        for e in job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["STUDY_WORKER_GROUPS"] == "cpu=16,gpu=2;cpu=8,gpu=0"


def test_the_rayjob_entrypoint_runs_a_study_on_a_loopback_cluster_killed_once_and_resumed(tmp_path):
    """A local stand-in for the RayJob: the rendered ConfigMap written where the pod mounts it,
    a two-node loopback cluster shaped like the rendered one (head: 0 CPUs, one worker), and
    the rendered entrypoint run exactly as the job's driver, SIGKILLed once, then run again."""
    import os
    import shlex
    from dataclasses import replace

    from conftest import assert_study_complete, kill_once_and_rerun, loopback_cluster, round_stamps, synthetic_spec_dict

    space = tmp_path / "tiny.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "study": {
                    "name": "k8s-tiny",
                    "base": synthetic_spec_dict(rounds=2, train={"iterations": 400, "eval_every": 100}),
                    "search": {"prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.5}},
                    "budget": {"num_samples": 4},
                    "max_concurrent": 2,
                }
            }
        )
    )
    opts = K8sOptions(
        image=IMAGE,
        profile="cpu-dev",
        mount_path=str(tmp_path / "mnt" / "lake"),
        config_dir=str(tmp_path / "etc" / "study"),
        existing_claim="team-lake",
    )
    objects = render(str(space), opts)
    configmap = [o for o in objects if o["kind"] == "ConfigMap"][0]
    job = [o for o in objects if o["kind"] == "RayJob"][0]
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    Path(opts.config_dir).mkdir(parents=True)
    (Path(opts.config_dir) / "study.yaml").write_text(configmap["data"]["study.yaml"])
    container_env = {e["name"]: e["value"] for e in head["template"]["spec"]["containers"][0]["env"] if "value" in e}
    lake = Path(opts.mount_path) / "results"
    argv = shlex.split(job["spec"]["entrypoint"])
    with loopback_cluster(head_cpus=0, worker_cpus=2) as address:
        env = {
            **os.environ,
            **container_env,
            "RAY_ADDRESS": address,
            "RAY_AUTH_MODE": "disabled",
            "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        }
        kill_once_and_rerun(argv, env, lake)
        finished = assert_study_complete(lake, "k8s-tiny", rounds={0, 1, 2})
        # a resubmission (a new RayJob name, the same study): its driver resumes a finished study
        resubmitted = [o for o in render(str(space), replace(opts, submission="2")) if o["kind"] == "RayJob"][0]
        assert resubmitted["metadata"]["name"] != job["metadata"]["name"]
        written = round_stamps(lake)
        again = subprocess.run(
            shlex.split(resubmitted["spec"]["entrypoint"]), env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert round_stamps(lake) == written, "nothing redone, nothing rewritten"
    assert len({r["node_id"] for r in finished}) == 1, "trials ran on the worker only: the head has no CPUs"
    assert (Path(opts.mount_path) / "optuna" / "k8s-tiny.journal").is_file()
    assert (Path(opts.mount_path) / "tune" / "k8s-tiny").is_dir()


def _kinds(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_sizing_flags_size_the_groups_and_a_trial_that_fits_none_is_refused(tmp_path):
    job = _kinds(
        rendered(worker_cpus=12, worker_memory="64Gi", max_workers=3, head_cpus=4, head_memory="16Gi"), "RayJob"
    )
    cluster = job[0]["spec"]["rayClusterSpec"]
    gpu, cpu = cluster["workerGroupSpecs"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "12", "memory": "64Gi", "nvidia.com/gpu": 1}
    assert cpu["maxReplicas"] == 3
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert head == {"cpu": "4", "memory": "16Gi"}
    assert job[0]["spec"]["preRunningDeadlineSeconds"] == 1800, "a cluster that never comes up fails the job"
    space = tmp_path / "big.yaml"
    raw = yaml.safe_load((ROOT / SPACE).read_text())
    raw["study"]["resources"] = {"cpu": 6, "gpu": 0}
    space.write_text(yaml.safe_dump(raw))
    out = study_cli("k8s", "render", str(space), "--profile", "cpu-dev", "--worker-cpus", "4", *CLAIM)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "6 CPU" in out.stderr and out.stdout == ""
    assert study_cli("k8s", "render", str(space), "--profile", "cpu-dev", "--worker-cpus", "8", *CLAIM).returncode == 0
    for flag, value, message in (
        ("--worker-memory", "48G", "not a quantity"),
        ("--head-cpus", "0", "--head-cpus must be"),
        ("--max-workers", "-1", "count pods"),
        ("--service-account", "Bad_Name", "not a Kubernetes object name"),
    ):
        out = study_cli("k8s", "render", SPACE, flag, value, *CLAIM)
        assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_a_warning_when_max_concurrent_exceeds_what_the_groups_hold(tmp_path):
    from study.search.study_spec import load_study_spec

    raw = yaml.safe_load((ROOT / SPACE).read_text())
    raw["study"].update(max_concurrent=8, seeds=[0, 1, 2], resources={"cpu": 2, "gpu": 0})
    space = tmp_path / "wide.yaml"
    space.write_text(yaml.safe_dump(raw))
    study = load_study_spec(space)
    # cpu-dev: at most 4 pods of 2 CPUs = 4 tasks of 2 CPUs, against 8 trials x 3 seeds = 24 at once
    warning = capacity_warning(study, K8sOptions(profile="cpu-dev"))
    assert warning and "24 lineage tasks" in warning and "at most 4" in warning
    assert capacity_warning(study, K8sOptions(profile="cpu-dev", max_workers=24)) is None  # 24 pods, 1 task each
    out = study_cli("k8s", "render", str(space), "--profile", "cpu-dev", *CLAIM)
    assert out.returncode == 0 and out.stderr.startswith("warning: ") and out.stdout.startswith("apiVersion")


def test_every_pod_is_hardened_and_only_the_namespace_reaches_the_study():
    objects = every_object(service_account="studies", postgres="bundled", auth_token_secret="ray-token")
    assert semantic_problems(objects, ray.__version__) == []
    templates = dict(pod_templates(objects))
    assert {"study-fashion-mnist-demo/head", "study-fashion-mnist-demo/submitter", "study-app"} <= set(templates)
    for where, template in templates.items():
        assert template["spec"]["securityContext"]["runAsUser"] != 0, where
        assert template["spec"]["serviceAccountName"] == "studies", where
    (policy,) = _kinds(objects, "NetworkPolicy")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    cluster = _kinds(objects, "RayJob")[0]["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], *[g["template"] for g in cluster["workerGroupSpecs"]]):
        assert selected.items() <= template["metadata"]["labels"].items(), "the policy selects every Ray pod"
    same_namespace, operator = policy["spec"]["ingress"]
    assert same_namespace == {"from": [{"podSelector": {}}]}, "the namespace's own pods"
    assert operator == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}}],
        "ports": [{"protocol": "TCP", "port": 8265}],
    }, "the operator's namespace reaches the Jobs API only"
    assert cluster["authOptions"] == {"mode": "token", "secretName": "ray-token"}
    service, statefulset = _kinds(objects, "Service")[0], _kinds(objects, "StatefulSet")[0]
    assert service["spec"]["clusterIP"] == "None", "the database's Service is headless"
    db = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(db) and db["resources"]["limits"]
    head_env = {e["name"]: e.get("value") for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert head_env["STUDY_DB_WAIT_S"] == "300", "the driver waits for the database it starts beside"
    assert not _kinds(objects, "Secret")


def test_the_lake_claim_is_rendered_apart_and_a_study_needs_one_or_remote_stores():
    study = rendered()
    assert not _kinds(study, "PersistentVolumeClaim"), "deleting a study's objects never deletes the lake"
    (pvc,) = storage_objects("team-lake", K8sOptions(storage_class="nfs-client", pvc_size="2Ti"))
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "nfs-client",
        "resources": {"requests": {"storage": "2Ti"}},
    }
    out = study_cli("k8s", "storage", "team-lake")
    assert out.returncode == 2 and "--storage-class" in out.stderr
    out = study_cli("k8s", "render", SPACE)
    assert out.returncode == 2 and "study k8s storage" in out.stderr and out.stderr.count("\n") == 1
    remote = rendered(**VARIANTS["all-remote"])
    volumes = remote[-1]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {"name": "lake", "emptyDir": {}}, "every store remote: scratch space only"


def test_the_app_reads_the_lake_read_only_and_staging_fills_the_shared_volume():
    opts = K8sOptions(image=IMAGE, existing_claim="team-lake")
    deployment, service = app_objects(opts)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "team-lake", "readOnly": True}
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "lake", "mountPath": "/mnt/lake", "readOnly": True}]
    assert {"name": "STUDY_RESULTS", "value": "/mnt/lake/results"} in container["env"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/_stcore/health"
    assert service["spec"]["ports"][0]["port"] == 8501
    (job,) = staging_objects("fashion_mnist", opts)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["python", "-m", "study.cli", "stage-data", "fashion_mnist", "--to", "/mnt/lake/datasets"]
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STUDY_DATA_DIR"] == "/mnt/lake/datasets", "where every pod looks for datasets"
    assert study_cli("k8s", "stage-data", "nosuch", *CLAIM).returncode == 2
    assert "needs --existing-claim" in study_cli("k8s", "app").stderr


def test_out_dir_writes_one_file_per_object_and_a_kustomization(tmp_path):
    out = study_cli("k8s", "render", SPACE, "--postgres", "bundled", *CLAIM, "--out-dir", str(tmp_path / "k"))
    assert out.returncode == 0, out.stderr
    kustomization = yaml.safe_load((tmp_path / "k" / "kustomization.yaml").read_text())
    files = kustomization["resources"]
    written = {p.name for p in (tmp_path / "k").iterdir()} - {"kustomization.yaml", ".study-rendered"}
    assert sorted(files) == sorted(written)
    together = [yaml.safe_load((tmp_path / "k" / f).read_text()) for f in files]
    assert together == list(
        yaml.safe_load_all(study_cli("k8s", "render", SPACE, "--postgres", "bundled", *CLAIM).stdout)
    )
    with pytest.raises(Exception, match="is a file"):
        write_kustomization(together, str(tmp_path / "k" / "kustomization.yaml"))
    # rendering again into the folder replaces what the last render wrote: nothing stale stays
    out = study_cli("k8s", "render", SPACE, "--kind", "raycluster", *CLAIM, "--out-dir", str(tmp_path / "k"))
    assert out.returncode == 0, out.stderr
    files = yaml.safe_load((tmp_path / "k" / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in (tmp_path / "k").iterdir()} - {"kustomization.yaml", ".study-rendered"}
    assert on_disk == set(files) and not any(f.startswith(("rayjob-", "statefulset-")) for f in files)
    # a folder with anything else in it is refused, and left as it was
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text("precious\n")
    out = study_cli("k8s", "storage", "team-lake", "--storage-class", "nfs", "--out-dir", str(mine))
    assert out.returncode == 2 and "did not write" in out.stderr and out.stderr.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["kustomization.yaml"] and (
        mine / "kustomization.yaml"
    ).read_text() == "precious\n"


def test_a_resubmission_is_a_new_rayjob_over_the_same_study():
    first, again = rendered(), rendered(submission="2")
    names = lambda objects: {(o["kind"], o["metadata"]["name"]) for o in objects}  # noqa: E731
    assert names(first) - names(again) == {("RayJob", "study-fashion-mnist-demo")}
    assert names(again) - names(first) == {("RayJob", "study-fashion-mnist-demo-2")}
    assert first[-1]["spec"] == again[-1]["spec"], "the same study, storage and entrypoint: it resumes"


def test_a_long_study_name_keeps_the_bundled_database_startable(tmp_path):
    """A StatefulSet's pods carry its name plus a revision hash in a 63-character label: the
    database's name is cut to 52, and the driver's URL and the Secret follow it."""
    raw = yaml.safe_load((ROOT / SPACE).read_text())
    raw["study"]["name"] = "a-study-name-of-forty-five-characters-exactly"
    space = tmp_path / "long.yaml"
    space.write_text(yaml.safe_dump(raw))
    objects = render(str(space), K8sOptions(image=IMAGE, existing_claim="team-lake", postgres="bundled"))
    assert semantic_problems(objects, ray.__version__) == []
    (statefulset,) = _kinds(objects, "StatefulSet")
    name = statefulset["metadata"]["name"]
    assert len(name) <= 52 and _kinds(objects, "Service")[0]["metadata"]["name"] == name
    config = yaml.safe_load(_kinds(objects, "ConfigMap")[0]["data"]["study.yaml"])["study"]
    assert f"@{name}:5432/" in config["storage"]["optuna"]
    password = statefulset["spec"]["template"]["spec"]["containers"][0]["env"][2]["valueFrom"]["secretKeyRef"]
    assert password == {"name": name, "key": "password"}
    statefulset["metadata"]["name"] = "x" * 53
    assert any("longer than 52" in p for p in semantic_problems(objects, ray.__version__))
