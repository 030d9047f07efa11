"""Kubernetes manifests for one study on KubeRay (operator v1.7, `ray.io/v1`), generated from the
study spec: the one source of truth (profiles `gpu` and `cpu-dev` play the part of overlays).

    study k8s storage team-lake --storage-class nfs-client | kubectl apply -f -
    study k8s render search_spaces/studies/fashion_mnist_demo.yaml --image REPO/lottery-study:TAG \
        --existing-claim team-lake | kubectl apply -f -

A study's objects (`render`): a ConfigMap with the study YAML (its storage pointed at the shared
volume), a NetworkPolicy, optionally PostgreSQL for Optuna (headless Service, StatefulSet), and a
RayJob (or a standalone RayCluster) whose head schedules no trials. Apart from any study: the
lake's ReadWriteMany claim mounted at the same path on every pod (`storage_objects`), the app
(`app_objects`) and a dataset-staging Job (`staging_objects`). Every pod runs under the
restricted Pod Security profile (`pod_spec`).

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
from study.search.preflight import DB_WAIT_ENV, WORKER_GROUPS_ENV, check_fits
from study.search.study_spec import StudySpec, load_study_spec
from study.secrets import plain_secret, redact
from study.typed_yaml import load_yaml

RAYJOB_NAME_MAX = 47  # KubeRay derives cluster and pod names from it
STATEFULSET_NAME_MAX = 52  # its pods' controller-revision-hash label (name + hash) must fit 63
MAX_PODS = 10_000  # a worker group's most pods (the API takes int32; no study needs more)
IMAGE_UID = 1000  # the image's user (k8s/Dockerfile)
# The largest machine types the big clouds offer (AWS u7inh-32tb, GCP x4-megamem-1920, Azure M896ixds:
# at most 1920 vCPUs and 32 TiB) and GPU nodes (8 GPUs, a few 16): a pod above these would stay
# Pending on every cluster until the job's deadline.
MAX_POD_CPUS = 1920
MAX_POD_MEMORY_MI = 32 * 1024 * 1024
MAX_POD_GPUS = 16
# An image reference as container runtimes parse it (github.com/distribution/reference), with a tag.
_DOMAIN = (
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
)
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?:(?:{_DOMAIN}|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
DASHBOARD_PORT = 8265  # Ray's dashboard: the Jobs API
# The "restricted" Pod Security Standard: every pod runs as a user, every container unprivileged.
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_security(uid: int) -> dict[str, Any]:
    """A pod's restricted securityContext: non-root `uid`, its group owning mounted volumes."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


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
    head_cpus: int = 2
    head_memory: str = "8Gi"
    worker_cpus: int | None = None  # per worker pod (default: 8 per GPU on profile gpu, 2 on cpu-dev)
    worker_memory: str | None = None  # per worker pod (default: 48Gi per GPU on profile gpu, 6Gi on cpu-dev)
    max_workers: int = 4  # the CPU worker group's most pods
    service_account: str | None = None  # every pod's identity (workload identity for object storage)
    auth_token_secret: str | None = None  # Ray token authentication with the token in this Secret
    pre_running_deadline_seconds: int = 1800  # a job whose cluster is not up by then fails
    db_wait_seconds: int = 300  # how long the driver waits for the Optuna database to answer
    submission: str | None = None  # a new RayJob name per submission (a finished RayJob ignores re-applies)
    operator_namespace: str = "default"  # where the KubeRay operator runs: it reads job status from :8265

    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise SpecError(f"--profile must be one of {', '.join(PROFILES)}, got {self.profile}")
        if self.kind not in ("rayjob", "raycluster"):
            raise SpecError(f"--kind must be rayjob or raycluster, got {self.kind}")
        if self.gpus < 0 or self.gpus_per_worker < 1:
            raise SpecError("--gpus must be >= 0 and --gpus-per-worker >= 1 (whole GPUs per pod)")
        for flag, cpus in (("--head-cpus", self.head_cpus), ("--worker-cpus", self.worker_cpus)):
            if cpus is not None and cpus < 1:
                raise SpecError(f"{flag} must be a whole number of CPUs >= 1, got {cpus}")
        for flag, memory in (("--head-memory", self.head_memory), ("--worker-memory", self.worker_memory)):
            if memory is not None and not re.fullmatch(r"[1-9][0-9]*(Mi|Gi|Ti)", memory):
                raise SpecError(f"{flag} {memory!r} is not a quantity such as 512Mi, 8Gi or 1Ti")
        if not 0 <= self.max_workers <= MAX_PODS or not 0 <= self.gpus <= MAX_PODS:
            raise SpecError(f"--max-workers and --gpus count pods: 0..{MAX_PODS}")
        if re.search(r"\s", self.image):
            raise SpecError(f"--image {self.image!r} has white space; give REPOSITORY:TAG")
        reference = self.image.split("@")[0]
        if not IMAGE_REFERENCE.fullmatch(self.image) or len(reference.rsplit(":", 1)[0]) > 255:
            raise SpecError(
                f"--image {self.image!r} is not an image reference a container runtime accepts: give "
                f"[REGISTRY/]PATH:TAG, the path in lower-case letters, digits and . _ -, the tag 1-128 of "
                f"letters, digits, _ . -"
            )
        for flag, cpus in (("--head-cpus", self.head_cpus), ("--worker-cpus", self.worker_cpus)):
            if cpus is not None and cpus > MAX_POD_CPUS:
                raise SpecError(
                    f"{flag} {cpus} is more than any node has (the largest machine types have {MAX_POD_CPUS} "
                    f"vCPUs): the pod would stay Pending; give the CPUs of one of your node types"
                )
        for flag, memory in (("--head-memory", self.head_memory), ("--worker-memory", self.worker_memory)):
            if memory is not None and _mebibytes(memory) > MAX_POD_MEMORY_MI:
                raise SpecError(
                    f"{flag} {memory} is more than any node has (the largest machine types have 32Ti): the pod "
                    f"would stay Pending; give the memory of one of your node types"
                )
        if self.gpus_per_worker > MAX_POD_GPUS:
            raise SpecError(
                f"--gpus-per-worker {self.gpus_per_worker} is more than any GPU node has (at most {MAX_POD_GPUS}); "
                f"give the GPUs of one of your node types"
            )
        for flag, value in (("--namespace", self.namespace), ("--existing-claim", self.existing_claim)):
            if value is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value):
                raise SpecError(f"{flag} {value!r} is not a Kubernetes name (lower-case letters, digits, '-')")
        if self.storage_class is not None and not re.fullmatch(
            r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", self.storage_class
        ):
            raise SpecError(f"--storage-class {self.storage_class!r} is not a storage class name")
        if not re.fullmatch(r"[1-9][0-9]*(Mi|Gi|Ti|Pi)", self.pvc_size):
            raise SpecError(f"--size {self.pvc_size!r} is not a quantity such as 500Gi or 2Ti")
        if self.pre_running_deadline_seconds < 1:
            raise SpecError("--pre-running-deadline must be >= 1 second")
        if self.db_wait_seconds < 0:
            raise SpecError(f"--db-wait must be >= 0 seconds, got {self.db_wait_seconds}")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.operator_namespace):
            raise SpecError(
                f"--operator-namespace {self.operator_namespace!r} is not a namespace name (a DNS-1123 label); "
                f"give the namespace the KubeRay operator's helm release is in"
            )
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
        for flag, name in (
            ("--s3-secret", self.s3_secret),
            ("--postgres-secret", self.postgres_secret),
            ("--auth-token-secret", self.auth_token_secret),
            ("--service-account", self.service_account),
        ):
            if name is not None and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", name):
                raise SpecError(
                    f"{flag} {name!r} is not a Kubernetes object name (lower-case letters, digits, '-', '.')"
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

    @property
    def all_remote(self) -> bool:
        """The lake, Tune's storage and Optuna's database all outside the pods: no shared volume needed."""
        return bool(self.results and self.tune_storage and self.postgres)

    def check_storage(self) -> None:
        if self.existing_claim is None and not self.all_remote:
            raise SpecError(
                "the study needs the lake's shared volume: make it once with `study k8s storage NAME --storage-class "
                "CLASS | kubectl apply -f -` and pass --existing-claim NAME (or keep every store remote: --results "
                "s3://..., --tune-storage s3://..., --postgres ...)"
            )


def _mebibytes(memory: str) -> int:
    """A validated --*-memory quantity (Mi, Gi or Ti) in MiB."""
    number, unit = int(memory[:-2]), memory[-2:]
    return number * {"Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}[unit]


def k8s_name(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text, within `limit` characters (hash-suffixed if cut)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "study"
    if len(name) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        name = f"{name[: limit - 7].rstrip('-')}-{digest}"
    return name


def worker_groups(opts: K8sOptions) -> list[WorkerGroup]:
    """The worker groups of a profile, sized by the flags (--worker-cpus/--worker-memory size the
    profile's main group: the GPU group, or cpu-dev's CPU group)."""
    if opts.profile == "cpu-dev":
        return [
            WorkerGroup(
                "cpu",
                min(1, opts.max_workers),
                min(1, opts.max_workers),
                opts.max_workers,
                cpus=opts.worker_cpus or 2,
                memory=opts.worker_memory or "6Gi",
            )
        ]
    return [
        WorkerGroup(
            "gpu",
            0,
            0,
            opts.gpus,
            cpus=opts.worker_cpus or 8 * opts.gpus_per_worker,
            memory=opts.worker_memory or f"{48 * opts.gpus_per_worker}Gi",
            gpus=opts.gpus_per_worker,
        ),
        WorkerGroup("cpu", 0, 0, opts.max_workers, cpus=8, memory="16Gi"),
    ]


def capacity_warning(study: StudySpec, opts: K8sOptions) -> str | None:
    """A warning when the worker groups at their largest hold fewer of the study's lineage tasks
    (a trial's seeds, `max_concurrent` trials at once) than it would run at once. A study
    without max_concurrent fills whatever the cluster holds: no warning."""
    if study.max_concurrent is None:
        return None
    tasks = study.tasks_per_trial()  # a task per seed, or per GPU's worth of packed seeds
    need = study.max_concurrent * tasks
    cpu, gpu = study.task_request()
    slots = 0
    for g in worker_groups(opts):
        per_pod = int(g.cpus // cpu) if cpu > 0 else need
        if gpu > 0:
            per_pod = min(per_pod, int(g.gpus // gpu))
        slots += g.max_replicas * per_pod
    if slots >= need:
        return None
    return (
        f"max_concurrent {study.max_concurrent} x {tasks} task(s) per trial = {need} lineage tasks at once, but the "
        f"worker groups hold at most {slots} of them ({cpu:g} CPU, {gpu:g} GPU each); the rest wait: raise "
        f"--gpus/--max-workers or lower max_concurrent"
    )


def plugin_notice(study: StudySpec) -> str | None:
    """How a study's own code reaches the pods (None: it runs built-ins only). Local
    runtime_env paths are refused: they are this machine's, not the pods'."""
    from study.search.plugins_on_ray import uses_user_code

    local = [p for p in (*study.runtime_env.py_modules, study.runtime_env.working_dir or "") if p and "://" not in p]
    if local:
        raise SpecError(
            f"runtime_env {local[0]} is a path on this machine, which the pods do not have; install the package in "
            f"the image (a RUN pip install line in k8s/Dockerfile) or give an s3:// or https:// URI of its zip"
        )
    if not uses_user_code(study.base):
        return None
    base = study.base
    named = [f"plugins {', '.join(base['plugins'])}" if base.get("plugins") else "", f"model {base.get('model')}",
             f"dataset {base.get('dataset')}"]  # fmt: skip
    shipped = ", ".join(study.runtime_env.py_modules)
    how = (
        f"runtime_env ships {shipped} to every pod"
        if shipped
        else "the image must have it installed: add `RUN pip install <your package>` to k8s/Dockerfile and rebuild "
        "the image (or list s3:// / https:// zips in the study's runtime_env.py_modules)"
    )
    return (
        f"this study runs your code ({'; '.join(n for n in named if n)}): {how}; the driver checks every node "
        f"can import it before any trial starts"
    )


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
    opts.check_storage()
    study = load_study_spec(space_path)  # validated before anything is rendered
    groups = [g for g in worker_groups(opts) if g.max_replicas > 0]  # a group that can never start holds nothing
    try:
        check_fits(
            *study.task_request(), [], [{"CPU": g.cpus, "GPU": g.gpus} for g in groups], lineages=study.pack_size()
        )
    except SpecError as e:
        raise SpecError(
            f"{e} (the worker groups of profile {opts.profile}); pick a profile or --gpus-per-worker that holds a trial"
        ) from None
    raw = load_yaml(space_path)
    base = k8s_name(f"study-{study.name}", RAYJOB_NAME_MAX)
    labels = {"app.kubernetes.io/name": "lottery-study", "app.kubernetes.io/instance": base}
    meta = lambda n: {"name": n, "labels": dict(labels), **({"namespace": opts.namespace} if opts.namespace else {})}  # noqa: E731
    claim = opts.existing_claim
    secret_env: list[dict] = []
    objects: list[dict[str, Any]] = []
    db_url = None
    database = postgres_name(base)
    db_secret = database if opts.postgres == "bundled" else opts.postgres_secret
    if opts.postgres == "bundled":
        db_url = f"postgresql://optuna:${{OPTUNA_DB_PASSWORD}}@{database}:5432/optuna"
        objects += postgres_objects(database, meta, labels, opts)
    elif opts.postgres:
        db_url = with_password_variable(opts.postgres) if opts.postgres_secret else opts.postgres
    if db_secret:
        secret_env = [
            {"name": "OPTUNA_DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": db_secret, "key": "password"}}}
        ]
    if db_url:  # the driver waits this long for the database to answer (a bundled one starts beside it)
        secret_env.append({"name": DB_WAIT_ENV, "value": str(opts.db_wait_seconds)})
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(f"{base}-spec"),
            "data": {"study.yaml": study_yaml_for_cluster(raw, opts, study.name, db_url)},
        }
    )
    sizes = ";".join(f"cpu={g.cpus},gpu={g.gpus}" for g in groups)  # the driver's preflight counts them as nodes
    head_env = [*secret_env, {"name": WORKER_GROUPS_ENV, "value": sizes}]
    cluster = ray_cluster_spec(opts, claim, f"{base}-spec", head_env, s3_env(opts), labels)
    objects.append(network_policy(base, meta, labels, opts.operator_namespace))
    job_name = k8s_name(f"{base}-{opts.submission}", RAYJOB_NAME_MAX) if opts.submission else base
    if opts.kind == "raycluster":
        objects.append({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": meta(base), "spec": cluster})
    else:
        objects.append(
            {
                "apiVersion": "ray.io/v1",
                "kind": "RayJob",
                "metadata": meta(job_name),
                "spec": {
                    "entrypoint": entrypoint(opts),
                    "shutdownAfterJobFinishes": True,
                    "ttlSecondsAfterFinished": opts.ttl_seconds,
                    "backoffLimit": opts.backoff_limit,
                    "activeDeadlineSeconds": opts.active_deadline_seconds,
                    "preRunningDeadlineSeconds": opts.pre_running_deadline_seconds,
                    "submissionMode": "K8sJobMode",
                    "submitterPodTemplate": submitter_template(opts, labels),
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
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
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


def pod_spec(opts: K8sOptions, containers: list[dict], volumes: list[dict], uid: int = IMAGE_UID) -> dict[str, Any]:
    """A pod spec under the restricted profile, with the study's service account when given."""
    spec: dict[str, Any] = {"securityContext": pod_security(uid), "containers": containers, "volumes": volumes}
    if opts.service_account:
        spec["serviceAccountName"] = opts.service_account
    return spec


def lake_volume(claim: str | None) -> dict[str, Any]:
    """The shared volume (a claim made apart, `storage_objects`), or, for a study whose stores
    are all remote, a scratch emptyDir per pod for datasets, caches and checkpoints."""
    if claim is None:
        return {"name": "lake", "emptyDir": {}}
    return {"name": "lake", "persistentVolumeClaim": {"claimName": claim}}


def storage_objects(name: str, opts: K8sOptions) -> list[dict[str, Any]]:
    """The lake's ReadWriteMany claim, rendered apart from any study so that deleting a study's
    objects never deletes the lake; a storage class is required (no default class is RWX)."""
    if not opts.storage_class:
        raise SpecError("--storage-class is required: name a ReadWriteMany class (NFS, CephFS, EFS, Filestore...)")
    opts.validate()
    if k8s_name(name) != name:
        raise SpecError(f"claim name {name!r} is not a DNS-1123 label; try {k8s_name(name)!r}")
    metadata = _metadata(name, opts, "lake")
    spec = {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": opts.storage_class,
        "resources": {"requests": {"storage": opts.pvc_size}},
    }
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}]


# KubeRay starts every Ray container with `ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start ...`.
# Without capabilities a process may raise its soft limit only up to the hard limit the runtime gave
# it, so on a node whose hard limit is below 65536 that ulimit fails and Ray runs with the soft
# default (1024 under containerd 2 and CRI-O). bash's `ulimit -n hard` raises the soft limit to
# the hard one, which never needs a capability.
ULIMIT_ENV = {"name": "RAY_START_ULIMIT_OPEN_FILES", "value": "hard"}


def ray_cluster_spec(
    opts: K8sOptions,
    claim: str | None,
    configmap: str,
    head_env: list[dict],
    pod_env: list[dict],
    labels: dict[str, str],
) -> dict[str, Any]:
    lake = lake_volume(claim)
    lake_mount = {"name": "lake", "mountPath": opts.mount_path}
    head_container = _container(
        "ray-head",
        opts,
        opts.head_cpus,
        opts.head_memory,
        0,
        [ULIMIT_ENV, *pod_env, *head_env],
        [lake_mount, {"name": "study-spec", "mountPath": opts.config_dir, "readOnly": True}],
    )
    head_container["ports"] = [
        {"containerPort": 6379, "name": "gcs"},
        {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ]
    groups = []
    for g in worker_groups(opts):
        worker = _container("ray-worker", opts, g.cpus, g.memory, g.gpus, [ULIMIT_ENV, *pod_env], [lake_mount])
        pod = pod_spec(opts, [worker], [copy.deepcopy(lake)])
        if g.gpus:
            pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        groups.append(
            {
                "groupName": g.name,
                "replicas": g.replicas,
                "minReplicas": g.min_replicas,
                "maxReplicas": g.max_replicas,
                "rayStartParams": {},
                "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
            }
        )
    head_volumes = [lake, {"name": "study-spec", "configMap": {"name": configmap}}]
    spec: dict[str, Any] = {
        "rayVersion": opts.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 120,
            "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        },
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec(opts, [head_container], head_volumes)},
        },
        "workerGroupSpecs": groups,
    }
    if opts.auth_token_secret:
        spec["authOptions"] = {"mode": "token", "secretName": opts.auth_token_secret}
    return spec


def submitter_template(opts: K8sOptions, labels: dict[str, str]) -> dict[str, Any]:
    """The pod that runs `ray job submit` (KubeRay supplies the command): the study's image,
    restricted like every other pod."""
    container = {
        "name": "job-submitter",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    }
    spec = pod_spec(opts, [container], [])
    del spec["volumes"]
    return {"metadata": {"labels": dict(labels)}, "spec": {"restartPolicy": "Never", **spec}}


def network_policy(base: str, meta, labels: dict[str, str], operator_namespace: str) -> dict[str, Any]:
    """Only pods of the same namespace reach the study's pods (the Jobs API on :8265, Ray's
    ports, the database), and the KubeRay operator's namespace the dashboard port it reads job
    status from: nothing else, from other namespaces or outside the cluster."""
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(f"{base}-namespace-only"),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/instance": labels["app.kubernetes.io/instance"]}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {}}]},
                {"from": [operator], "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}]},
            ],
        },
    }


POSTGRES_UID = 999  # the postgres image's own user


def postgres_name(base: str) -> str:
    """The bundled database's StatefulSet, Service and Secret: `<base>-postgres`, cut to fit."""
    return k8s_name(f"{base}-postgres", STATEFULSET_NAME_MAX)


def postgres_objects(name: str, meta, labels: dict[str, str], opts: K8sOptions) -> list[dict[str, Any]]:
    """PostgreSQL for Optuna. Its password lives in the Secret `name` (`postgres_name`), created
    once in the cluster (k8s/README.md), never rendered: so no manifest holds it, and re-applying
    never rotates the password of a live database."""
    sel = {**labels, "app.kubernetes.io/component": "optuna-db"}
    env = [
        {"name": "POSTGRES_USER", "value": "optuna"},
        {"name": "POSTGRES_DB", "value": "optuna"},
        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
    ]
    ready = {"exec": {"command": ["pg_isready", "-U", "optuna", "-h", "127.0.0.1"]}}
    postgres = {
        "name": "postgres",
        "image": "postgres:16.4",
        "env": env,
        "ports": [{"containerPort": 5432, "name": "postgres"}],
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "startupProbe": {**ready, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**ready, "periodSeconds": 5},
        "livenessProbe": {**ready, "periodSeconds": 20, "failureThreshold": 6},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(name),
            "spec": {  # headless: the StatefulSet's pod by name, no virtual IP in front of one pod
                "clusterIP": "None",
                "selector": sel,
                "ports": [{"port": 5432, "targetPort": 5432, "name": "postgres"}],
            },
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
                        k: v for k, v in pod_spec(opts, [postgres], [], uid=POSTGRES_UID).items() if k != "volumes"
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


APP_PORT = 8501


def _metadata(name: str, opts: K8sOptions, component: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "lottery-study", "app.kubernetes.io/component": component}
    return {"name": name, "labels": labels, **({"namespace": opts.namespace} if opts.namespace else {})}


def _claim_for(opts: K8sOptions, what: str) -> str:
    if not opts.existing_claim:
        raise SpecError(f"{what} needs --existing-claim NAME: the lake's claim (`study k8s storage`)")
    return opts.existing_claim


def app_objects(opts: K8sOptions, replicas: int = 1) -> list[dict[str, Any]]:
    """The Streamlit app as a Deployment and a Service, reading the lake on the shared volume
    through a read-only mount (or an S3 lake with --results)."""
    opts.validate()
    if not 1 <= replicas <= MAX_PODS:
        raise SpecError(f"--replicas must be in 1..{MAX_PODS}, got {replicas}")
    root = opts.results or f"{opts.mount_path}/results"
    claim = None if opts.results else _claim_for(opts, "the app on the shared volume")
    name = "study-app"
    meta = _metadata(name, opts, "app")
    container = _container("app", opts, 1, "2Gi", 0, [{"name": "STUDY_RESULTS", "value": root}, *s3_env(opts)], [])
    container["command"] = ["streamlit", "run", "app.py", "--server.headless=true", f"--server.port={APP_PORT}"]
    container["ports"] = [{"containerPort": APP_PORT, "name": "http"}]
    health = {"httpGet": {"path": "/_stcore/health", "port": APP_PORT}}
    container["readinessProbe"] = {**health, "periodSeconds": 10}
    container["livenessProbe"] = {**health, "periodSeconds": 30, "failureThreshold": 4}
    volumes = []
    if claim:
        container["volumeMounts"] = [{"name": "lake", "mountPath": opts.mount_path, "readOnly": True}]
        volumes = [{"name": "lake", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}]
    selector = dict(meta["labels"])
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": dict(selector)}, "spec": pod_spec(opts, [container], volumes)},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(name, opts, "app"),
            "spec": {"selector": dict(selector), "ports": [{"port": APP_PORT, "targetPort": APP_PORT, "name": "http"}]},
        },
    ]


def staging_objects(dataset: str, opts: K8sOptions, download: bool = False) -> list[dict[str, Any]]:
    """A Job that puts a dataset's files on the shared volume, where every pod's $STUDY_DATA_DIR
    points: from the image's copy (Fashion-MNIST) or downloaded (--download, an online cluster)."""
    from study.engine.data.vision import check_stageable

    opts.validate()
    check_stageable(dataset)
    claim = _claim_for(opts, "staging a dataset")
    target = f"{opts.mount_path}/datasets"
    container = _container("stage", opts, 1, "2Gi", 0, [], [{"name": "lake", "mountPath": opts.mount_path}])
    container["command"] = [
        "python", "-m", ENTRYPOINT_MODULE, "stage-data", dataset, "--to", target, *(["--download"] if download else []),
    ]  # fmt: skip
    pod = pod_spec(opts, [container], [{"name": "lake", "persistentVolumeClaim": {"claimName": claim}}])
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _metadata(k8s_name(f"stage-{dataset}"), opts, "stage-data"),
            "spec": {
                "backoffLimit": 2,
                "ttlSecondsAfterFinished": 3600,
                "template": {"spec": {"restartPolicy": "OnFailure", **pod}},
            },
        }
    ]


RENDERED_LIST = ".study-rendered"  # what the last render wrote into an --out-dir folder


def write_kustomization(objects: list[dict[str, Any]], folder: str) -> list[str]:
    """One file per object (`<kind>-<name>.yaml`) and a kustomization.yaml listing them, for
    `kubectl apply -k` and GitOps tools; returns the files written. The folder is new, empty, or
    one an earlier render wrote (its files, listed in `.study-rendered`, are replaced: nothing
    stale stays); a folder holding anything else is refused."""
    from pathlib import Path

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise SpecError(f"--out-dir {folder} is a file; name a folder")
    names = []
    for obj in objects:
        name = f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        if name in names:
            raise SpecError(f"two objects would be written to {name}")
        names.append(name)
    try:
        earlier = (out / RENDERED_LIST).read_text().split() if (out / RENDERED_LIST).is_file() else []
        present = {p.name for p in out.iterdir()} if out.is_dir() else set()
        foreign = present - set(earlier) - {RENDERED_LIST}
        if foreign:
            raise SpecError(
                f"--out-dir {folder} holds files a render did not write ({', '.join(sorted(foreign)[:3])}); "
                f"name a new or empty folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        for stale in set(earlier) - {*names, "kustomization.yaml"}:
            (out / stale).unlink(missing_ok=True)
        for obj, name in zip(objects, names, strict=True):
            (out / name).write_text(dump([obj]))
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": names}
        (out / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        (out / RENDERED_LIST).write_text("\n".join([*names, "kustomization.yaml"]) + "\n")
    except OSError as e:
        raise SpecError(f"--out-dir {folder} cannot be written ({e.strerror or e}); name a writable folder") from None
    return [*names, "kustomization.yaml"]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False)
