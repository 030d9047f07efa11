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

from study.deploy.k8s import K8sOptions, dump, render
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
}


def rendered(**kw):
    return render(SPACE, K8sOptions(image="ghcr.io/acme/lottery-study:0.1.0", **kw))


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
    for obj in objects:
        if obj["apiVersion"] in ("v1", "apps/v1"):
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
    pvc = [o for o in rendered() if o["kind"] == "PersistentVolumeClaim"][0]
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


EXAMPLES = {
    "fashion-mnist-demo-gpu.yaml": ["search_spaces/studies/fashion_mnist_demo.yaml"],
    "fashion-mnist-demo-cpu-dev.yaml": ["search_spaces/studies/fashion_mnist_demo.yaml", "--profile", "cpu-dev"],
    "lenet300-mnist-paper-gpu-postgres.yaml": [
        "search_spaces/studies/lenet300_mnist_paper.yaml",
        "--gpus",
        "8",
        "--postgres",
        "bundled",
        "--tune-storage",
        "s3://acme-studies/tune",
    ],
    "raycluster-cpu-dev.yaml": [
        "search_spaces/studies/fashion_mnist_demo.yaml",
        "--kind",
        "raycluster",
        "--profile",
        "cpu-dev",
    ],
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_committed_examples_match_a_fresh_render(name):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.cli",
            "k8s",
            "render",
            *EXAMPLES[name],
            "--image",
            "ghcr.io/acme/lottery-study:0.1.0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == (ROOT / "k8s" / "examples" / name).read_text(), (
        f"k8s/examples/{name} is stale: re-render it with `study k8s render {' '.join(EXAMPLES[name])}`"
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
    ):
        out = subprocess.run(
            [sys.executable, "-m", "study.cli", "k8s", "render", SPACE, *args], capture_output=True, text=True
        )
        assert out.returncode == 2 and expected in out.stderr and out.stderr.count("\n") == 1, out.stderr
        assert "Planted99" not in out.stdout + out.stderr


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
        [sys.executable, "-m", "study.cli", "k8s", "render", str(space), "--profile", "cpu-dev"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "0.25 GPU" in out.stderr, out.stderr
    assert "profile cpu-dev" in out.stderr and out.stdout == ""
    objects = render(str(space), K8sOptions(image="ghcr.io/acme/lottery-study:0.1.0", gpus_per_worker=2))
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

    from conftest import assert_study_complete, kill_once_and_rerun, loopback_cluster, synthetic_spec_dict

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
        image="ghcr.io/acme/lottery-study:0.1.0",
        profile="cpu-dev",
        mount_path=str(tmp_path / "mnt" / "lake"),
        config_dir=str(tmp_path / "etc" / "study"),
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
    assert len({r["node_id"] for r in finished}) == 1, "trials ran on the worker only: the head has no CPUs"
    assert (Path(opts.mount_path) / "optuna" / "k8s-tiny.journal").is_file()
    assert (Path(opts.mount_path) / "tune" / "k8s-tiny").is_dir()
