"""Kubernetes manifests for one study on KubeRay (operator v1.7, `ray.io/v1`), generated from the
study spec: the one source of truth (profiles `gpu` and `cpu-dev` play the part of overlays).

    study k8s render search_spaces/studies/fashion_mnist_demo.yaml --image REPO/lottery-study:TAG | kubectl apply -f -

Objects: a ConfigMap with the study YAML (its storage pointed at the shared volume), a
ReadWriteMany PersistentVolumeClaim mounted at the same path on every pod (lake, Tune storage,
Optuna journal, dataset cache), optionally PostgreSQL for Optuna (Service, StatefulSet), and a
RayJob (or a standalone RayCluster) whose head schedules no trials.

No secret is ever rendered: passwords and keys come from Secrets that exist in the cluster
(`secretKeyRef`), and URLs in the ConfigMap name them as ${VAR}.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from study.errors import SpecError
from study.lake.store import normalize_root
from study.search.preflight import WORKER_GROUPS_ENV, check_fits
from study.search.study_spec import load_study_spec
from study.secrets import plain_secret, redact
from study.typed_yaml import load_yaml

RAYJOB_NAME_MAX = 47  # KubeRay derives cluster and pod names from it
PROFILES = ("gpu", "cpu-dev")
ENTRYPOINT_MODULE = "study.cli"


@dataclass(frozen=True)
class WorkerGroup:
    name: str
    min_replicas: int
    replicas: int
    max_replicas: int
    cpus: int
    memory: str
    gpus: int = 0


@dataclass(frozen=True)
class K8sOptions:
    image: str = "lottery-study:0.1.0"
    profile: str = "gpu"
    gpus: int = 4  # most GPU worker pods (one GPU each by default)
    gpus_per_worker: int = 1
    namespace: str | None = None
    mount_path: str = "/mnt/lake"
    config_dir: str = "/etc/study"
    pvc_size: str = "100Gi"
    storage_class: str | None = None  # an RWX class (NFS, CephFS, EFS, Filestore...)
    existing_claim: str | None = None
    tune_storage: str | None = None  # s3://bucket/prefix for Tune experiments
    results: str | None = None  # s3://bucket/prefix for the lake (default: the shared volume)
    s3_secret: str | None = None  # a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (else the pods' IAM role)
    s3_endpoint: str | None = None  # an S3-compatible endpoint (MinIO, Ceph...): AWS_ENDPOINT_URL on every pod
    postgres: str | None = None  # "bundled" or an external postgresql:// URL for Optuna, without its password
    postgres_secret: str | None = None  # the Secret (key "password") of an external database's password
    ttl_seconds: int = 3600
    backoff_limit: int = 2
    active_deadline_seconds: int = 7 * 24 * 3600
    kind: str = "rayjob"  # or "raycluster"
    ray_version: str = field(default="")

    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise SpecError(f"--profile must be one of {', '.join(PROFILES)}, got {self.profile}")
        if self.kind not in ("rayjob", "raycluster"):
            raise SpecError(f"--kind must be rayjob or raycluster, got {self.kind}")
        if self.gpus < 0 or self.gpus_per_worker < 1:
            raise SpecError("--gpus must be >= 0 and --gpus-per-worker >= 1 (whole GPUs per pod)")
        if ":" not in self.image.rsplit("/", 1)[-1]:
            raise SpecError(f"--image {self.image} has no tag; pin one, e.g. {self.image}:0.1.0")
        for flag, uri in (("--tune-storage", self.tune_storage), ("--results", self.results)):
            if uri is not None:
                if not uri.startswith("s3://"):
                    raise SpecError(f"{flag} takes an s3://bucket/prefix (the default keeps it on the shared volume)")
                normalize_root(uri)  # no credentials or options in the URI
        if self.postgres and self.postgres != "bundled" and not self.postgres.startswith("postgresql://"):
            raise SpecError("--postgres is 'bundled' or a postgresql:// URL")
        if self.postgres and self.postgres != "bundled" and plain_secret(self.postgres):
            raise SpecError(
                f"--postgres {redact(self.postgres)} holds a password, which would be written into the ConfigMap; "
                f"pass the URL without it and --postgres-secret NAME (a Secret with key 'password')"
            )
        for flag, name in (("--s3-secret", self.s3_secret), ("--postgres-secret", self.postgres_secret)):
            if name is not None and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", name):
                raise SpecError(
                    f"{flag} {name!r} is not a Kubernetes Secret name (lower-case letters, digits, '-', '.')"
                )
        if self.s3_endpoint is not None and not re.fullmatch(
            r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:\d+)?/?", self.s3_endpoint
        ):
            raise SpecError(
                f"--s3-endpoint {redact(self.s3_endpoint)} is not http(s)://host[:port]; keys go in the "
                f"--s3-secret Secret, never in the URL"
            )
        if self.postgres_secret and (not self.postgres or self.postgres == "bundled"):
            raise SpecError("--postgres-secret goes with an external --postgres postgresql://user@host/db")
        if not self.mount_path.startswith("/") or not self.config_dir.startswith("/"):
            raise SpecError("--mount-path and --config-dir must be absolute paths")


def k8s_name(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text, within `limit` characters (hash-suffixed if cut)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "study"
    if len(name) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        name = f"{name[: limit - 7].rstrip('-')}-{digest}"
    return name


def worker_groups(opts: K8sOptions) -> list[WorkerGroup]:
    if opts.profile == "cpu-dev":
        return [WorkerGroup("cpu", 1, 1, 4, cpus=2, memory="6Gi")]
    return [
        WorkerGroup(
            "gpu",
            0,
            0,
            opts.gpus,
            cpus=8 * opts.gpus_per_worker,
            memory=f"{48 * opts.gpus_per_worker}Gi",
            gpus=opts.gpus_per_worker,
        ),
        WorkerGroup("cpu", 0, 0, 4, cpus=8, memory="16Gi"),
    ]


def study_yaml_for_cluster(raw: dict, opts: K8sOptions, name: str, db_url: str | None) -> str:
    """The study YAML as the cluster sees it: every store on the shared volume (or S3/Postgres)."""
    raw = copy.deepcopy(raw)
    storage = raw["study"].setdefault("storage", {})
    storage["results"] = opts.results or f"{opts.mount_path}/results"
    storage["tune"] = opts.tune_storage or f"{opts.mount_path}/tune"
    storage["optuna"] = db_url or f"{opts.mount_path}/optuna/{raw['study']['name']}.journal"
    return yaml.safe_dump(raw, sort_keys=False)


def render(space_path: str, opts: K8sOptions) -> list[dict[str, Any]]:
    import ray

    opts = replace(opts, ray_version=opts.ray_version or ray.__version__)
    opts.validate()
    study = load_study_spec(space_path)  # validated before anything is rendered
    groups = [g for g in worker_groups(opts) if g.max_replicas > 0]  # a group that can never start holds nothing
    try:
        check_fits(study.resources.cpu, study.resources.gpu, [], [{"CPU": g.cpus, "GPU": g.gpus} for g in groups])
    except SpecError as e:
        raise SpecError(
            f"{e} (the worker groups of profile {opts.profile}); pick a profile or --gpus-per-worker that holds a trial"
        ) from None
    raw = load_yaml(space_path)
    base = k8s_name(f"study-{study.name}", RAYJOB_NAME_MAX)
    labels = {"app.kubernetes.io/name": "lottery-study", "app.kubernetes.io/instance": base}
    meta = lambda n: {"name": n, "labels": dict(labels), **({"namespace": opts.namespace} if opts.namespace else {})}  # noqa: E731
    claim = opts.existing_claim or f"{base}-lake"
    secret_env: list[dict] = []
    objects: list[dict[str, Any]] = []
    db_url = None
    db_secret = f"{base}-postgres" if opts.postgres == "bundled" else opts.postgres_secret
    if opts.postgres == "bundled":
        db_url = f"postgresql://optuna:${{OPTUNA_DB_PASSWORD}}@{base}-postgres:5432/optuna"
        objects += postgres_objects(base, meta, labels)
    elif opts.postgres:
        db_url = with_password_variable(opts.postgres) if opts.postgres_secret else opts.postgres
    if db_secret:
        secret_env = [
            {"name": "OPTUNA_DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": db_secret, "key": "password"}}}
        ]
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(f"{base}-spec"),
            "data": {"study.yaml": study_yaml_for_cluster(raw, opts, study.name, db_url)},
        }
    )
    if not opts.existing_claim:
        pvc_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": opts.pvc_size}},
        }
        if opts.storage_class:
            pvc_spec["storageClassName"] = opts.storage_class
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(claim), "spec": pvc_spec})
    sizes = ";".join(f"cpu={g.cpus},gpu={g.gpus}" for g in groups)  # the driver's preflight counts them as nodes
    head_env = [*secret_env, {"name": WORKER_GROUPS_ENV, "value": sizes}]
    cluster = ray_cluster_spec(opts, claim, f"{base}-spec", head_env, s3_env(opts))
    if opts.kind == "raycluster":
        objects.append({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": meta(base), "spec": cluster})
    else:
        objects.append(
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayJob",
                "metadata": meta(base),
                "spec": {
                    "entrypoint": entrypoint(opts),
                    "shutdownAfterJobFinishes": True,
                    "ttlSecondsAfterFinished": opts.ttl_seconds,
                    "backoffLimit": opts.backoff_limit,
                    "activeDeadlineSeconds": opts.active_deadline_seconds,
                    "submissionMode": "K8sJobMode",
                    "rayClusterSpec": cluster,
                },
            }
        )
    return objects


def entrypoint(opts: K8sOptions) -> str:
    """Runs as the Ray job's driver on the head. `study tune` restores the study when its Tune
    storage already holds it and starts it otherwise, so every retry (a fresh cluster) resumes."""
    return f"python -m {ENTRYPOINT_MODULE} tune {opts.config_dir}/study.yaml --address auto"


def _container(
    name: str, opts: K8sOptions, cpus: int, memory: str, gpus: int, extra_env: list[dict], mounts: list[dict]
) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": str(cpus), "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    return {
        "name": name,
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": str(cpus), "memory": memory}, "limits": limits},
        "env": [
            {"name": "STUDY_DATA_DIR", "value": f"{opts.mount_path}/datasets"},
            {"name": "STUDY_CACHE_DIR", "value": f"{opts.mount_path}/cache"},
            *extra_env,
        ],
        "volumeMounts": copy.deepcopy(mounts),  # every pod its own objects: no aliasing in the output
    }


def with_password_variable(url: str) -> str:
    """postgresql://user@host/db -> postgresql://user:${OPTUNA_DB_PASSWORD}@host/db."""
    head, _, rest = url.partition("://")
    userinfo, at, host = rest.partition("/")[0].rpartition("@")
    if not at:
        raise SpecError(f"--postgres {url} names no user; write postgresql://USER@host:5432/db with --postgres-secret")
    return f"{head}://{userinfo}:${{OPTUNA_DB_PASSWORD}}@{rest[len(userinfo) + 1 :]}"


def s3_env(opts: K8sOptions) -> list[dict]:
    """Every pod's S3 settings: the endpoint, and the keys from their Secret (never their values)."""
    env: list[dict] = []
    if opts.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": opts.s3_endpoint})
    if opts.s3_secret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": opts.s3_secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return env


def ray_cluster_spec(
    opts: K8sOptions, claim: str, configmap: str, head_env: list[dict], pod_env: list[dict]
) -> dict[str, Any]:
    lake_volume = {"name": "lake", "persistentVolumeClaim": {"claimName": claim}}
    lake_mount = {"name": "lake", "mountPath": opts.mount_path}
    head_container = _container(
        "ray-head",
        opts,
        2,
        "8Gi",
        0,
        [*pod_env, *head_env],
        [lake_mount, {"name": "study-spec", "mountPath": opts.config_dir, "readOnly": True}],
    )
    head_container["ports"] = [
        {"containerPort": 6379, "name": "gcs"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ]
    groups = []
    for g in worker_groups(opts):
        pod: dict[str, Any] = {
            "containers": [_container("ray-worker", opts, g.cpus, g.memory, g.gpus, pod_env, [lake_mount])],
            "volumes": [copy.deepcopy(lake_volume)],
        }
        if g.gpus:
            pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        groups.append(
            {
                "groupName": g.name,
                "replicas": g.replicas,
                "minReplicas": g.min_replicas,
                "maxReplicas": g.max_replicas,
                "rayStartParams": {},
                "template": {"spec": pod},
            }
        )
    return {
        "rayVersion": opts.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 120},
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {
                "spec": {
                    "containers": [head_container],
                    "volumes": [lake_volume, {"name": "study-spec", "configMap": {"name": configmap}}],
                }
            },
        },
        "workerGroupSpecs": groups,
    }


def postgres_objects(base: str, meta, labels: dict[str, str]) -> list[dict[str, Any]]:
    """PostgreSQL for Optuna. Its password lives in the Secret `<base>-postgres`, created once
    in the cluster (k8s/README.md), never rendered: so no manifest holds it, and re-applying
    never rotates the password of a live database."""
    name = f"{base}-postgres"
    sel = {**labels, "app.kubernetes.io/component": "optuna-db"}
    env = [
        {"name": "POSTGRES_USER", "value": "optuna"},
        {"name": "POSTGRES_DB", "value": "optuna"},
        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(name),
            "spec": {"selector": sel, "ports": [{"port": 5432, "targetPort": 5432, "name": "postgres"}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta(name),
            "spec": {
                "serviceName": name,
                "replicas": 1,
                "selector": {"matchLabels": sel},
                "template": {
                    "metadata": {"labels": sel},
                    "spec": {
                        "containers": [
                            {
                                "name": "postgres",
                                "image": "postgres:16.4",
                                "env": env,
                                "ports": [{"containerPort": 5432}],
                                "readinessProbe": {
                                    "exec": {"command": ["pg_isready", "-U", "optuna"]},
                                    "periodSeconds": 5,
                                },
                                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
                    }
                ],
            },
        },
    ]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False)
