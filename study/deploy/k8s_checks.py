"""Project-owned semantic checks of rendered manifests: what a schema cannot say.

Each check returns readable problems; an empty list means the manifests hang together."""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Iterator
from typing import Any

import yaml

from study.deploy.k8s import RAYJOB_NAME_MAX, STATEFULSET_NAME_MAX

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def cluster_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] == "RayCluster":
            yield obj["metadata"]["name"], obj["spec"]
        elif obj["kind"] == "RayJob":
            yield obj["metadata"]["name"], obj["spec"]["rayClusterSpec"]


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in cluster_specs(objects):
        yield f"{name}/head", spec["headGroupSpec"]["template"]
        for g in spec.get("workerGroupSpecs", []):
            yield f"{name}/{g['groupName']}", g["template"]
    for obj in objects:
        if obj["kind"] in ("StatefulSet", "Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]
        elif obj["kind"] == "RayJob" and "submitterPodTemplate" in obj["spec"]:
            yield f"{obj['metadata']['name']}/submitter", obj["spec"]["submitterPodTemplate"]


def _security_problems(objects: list[dict[str, Any]]) -> list[str]:
    """The restricted Pod Security Standard on every pod: non-root, RuntimeDefault seccomp, and
    containers without privilege escalation or capabilities."""
    problems = []
    for where, template in pod_templates(objects):
        pod = template["spec"].get("securityContext", {})
        if pod.get("runAsNonRoot") is not True or pod.get("runAsUser") in (None, 0):
            problems.append(f"{where}: the pod must run as a non-root user (runAsNonRoot, runAsUser)")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: the pod needs seccompProfile RuntimeDefault")
        for c in template["spec"]["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or "ALL" not in sc.get("capabilities", {}).get(
                "drop", []
            ):
                problems.append(f"{where}/{c['name']}: no privilege escalation and all capabilities dropped")
    for name, spec in cluster_specs(objects):
        sc = spec.get("autoscalerOptions", {}).get("securityContext", {})
        if spec.get("enableInTreeAutoscaling") and sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: the autoscaler sidecar needs the same restricted securityContext")
    return problems


def semantic_problems(objects: list[dict[str, Any]], ray_version: str) -> list[str]:
    problems: list[str] = []
    for obj in objects:
        name = obj["metadata"]["name"]
        if not DNS1123.match(name) or len(name) > 63:
            problems.append(f"{obj['kind']} name '{name}' is not a DNS-1123 label of at most 63 characters")
        if obj["kind"] == "RayJob" and len(name) > RAYJOB_NAME_MAX:
            problems.append(f"RayJob name '{name}' is longer than {RAYJOB_NAME_MAX} characters")
        if obj["kind"] == "StatefulSet" and len(name) > STATEFULSET_NAME_MAX:
            problems.append(f"StatefulSet name '{name}' is longer than {STATEFULSET_NAME_MAX} characters")
    clusters = list(cluster_specs(objects))
    if not clusters:
        problems.append("no RayCluster or RayJob")
    images = {
        c["image"] for _, t in pod_templates(objects) for c in t["spec"]["containers"] if c["name"].startswith("ray-")
    }
    if len(images) != 1:
        problems.append(f"Ray pods use {len(images)} images ({sorted(images)}); use one tag everywhere")
    for image in images:
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            problems.append(f"image {image} has no pinned tag")
    for name, spec in clusters:
        if spec.get("rayVersion") != ray_version:
            problems.append(f"{name}: rayVersion {spec.get('rayVersion')} != installed ray {ray_version}")
        if str(spec["headGroupSpec"].get("rayStartParams", {}).get("num-cpus")) != "0":
            problems.append(f'{name}: the head must schedule no trials (rayStartParams num-cpus: "0")')
        for g in spec.get("workerGroupSpecs", []):
            lo, n, hi = g.get("minReplicas", 0), g.get("replicas", 0), g.get("maxReplicas", 0)
            if not 0 <= lo <= n <= hi:
                problems.append(
                    f"{name}/{g['groupName']}: needs 0 <= minReplicas <= replicas <= maxReplicas, got {lo}, {n}, {hi}"
                )
    for where, template in pod_templates(objects):
        for c in template["spec"]["containers"]:
            for section in ("limits", "requests"):
                gpu = c.get("resources", {}).get(section, {}).get("nvidia.com/gpu")
                if gpu is not None and (not isinstance(gpu, int) or isinstance(gpu, bool) or gpu < 1):
                    problems.append(f"{where}: nvidia.com/gpu {section} must be a whole number >= 1, got {gpu!r}")
    problems += _shared_volume_problems(objects)
    problems += _security_problems(objects)
    problems += _entrypoint_problems(objects)
    return problems


def _ray_templates(objects):
    return [
        (w, t) for w, t in pod_templates(objects) if any(c["name"].startswith("ray-") for c in t["spec"]["containers"])
    ]


def _shared_volume_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    mounts = set()
    claims = set()
    for where, template in _ray_templates(objects):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        lake = [
            (m["mountPath"], volumes.get(m["name"], {}).get("persistentVolumeClaim", {}).get("claimName"))
            for c in template["spec"]["containers"]
            for m in c.get("volumeMounts", [])
            if "persistentVolumeClaim" in volumes.get(m["name"], {})
        ]
        if not lake and not _all_remote(objects):
            problems.append(f"{where}: the shared volume is not mounted")
        mounts |= {p for p, _ in lake}
        claims |= {c for _, c in lake}
    if len(mounts) > 1 or len(claims) > 1:
        problems.append(
            f"the shared volume must be one claim at one path on every pod, got {sorted(claims)} at {sorted(mounts)}"
        )
    config = [o for o in objects if o["kind"] == "ConfigMap"]
    if config and mounts:
        study = yaml.safe_load(config[0]["data"]["study.yaml"])["study"]
        root = study["storage"]["results"]
        if not root.startswith("s3://") and not any(root == m or root.startswith(m.rstrip("/") + "/") for m in mounts):
            problems.append(f"the study's results root {root} is not on the shared volume ({sorted(mounts)})")
    for claim in claims:
        pvc = [o for o in objects if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim]
        if pvc and "ReadWriteMany" not in pvc[0]["spec"]["accessModes"]:
            problems.append(f"PersistentVolumeClaim {claim} must be ReadWriteMany (every pod writes the lake)")
    return problems


def _all_remote(objects: list[dict[str, Any]]) -> bool:
    """The study's lake, Tune storage and Optuna database are all outside the pods."""
    config = [o for o in objects if o["kind"] == "ConfigMap"]
    if not config:
        return False
    storage = yaml.safe_load(config[0]["data"]["study.yaml"])["study"]["storage"]
    return all(
        str(storage.get(k, "")).startswith(p)
        for k, p in (("results", "s3://"), ("tune", "s3://"), ("optuna", "postgresql://"))
    )


def _entrypoint_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for obj in objects:
        if obj["kind"] != "RayJob":
            continue
        argv = shlex.split(obj["spec"]["entrypoint"])
        if argv[:2] != ["python", "-m"]:
            problems.append(f"entrypoint should run a module with python -m, got {argv[:2]}")
            continue
        try:
            importlib.import_module(argv[2])
        except ImportError as e:
            problems.append(f"entrypoint module {argv[2]} is not importable: {e}")
        spec = obj["spec"]
        if not spec.get("shutdownAfterJobFinishes") or spec.get("ttlSecondsAfterFinished") is None:
            problems.append(
                "a RayJob should shut its cluster down after the job (shutdownAfterJobFinishes, ttlSecondsAfterFinished)"
            )
        if spec.get("activeDeadlineSeconds") is None or spec.get("backoffLimit") is None:
            problems.append("a RayJob needs activeDeadlineSeconds and backoffLimit")
    return problems
