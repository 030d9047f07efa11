"""The controllers that turn the rendered objects into pods on the local node: a Job's (one pod at
a time, a new one per failure up to backoffLimit), a Deployment's (its replicas), and KubeRay's
RayJob controller for K8sJobMode (the RayCluster's head and worker pods, the head service's DNS
names, the cluster Ready when every pod is, then the submitter Job, the job's status read from
the dashboard's Jobs API until it ends, and the cluster shut down after it)."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from study.deploy.local import kuberay
from study.deploy.local.kubelet import Kubelet, Phase, Pod

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# The operator would wait out preRunningDeadlineSeconds for a pod that keeps crashing; a local run
# stops at its second restart and shows the container's log instead.
CRASH_LOOP = 2


@dataclass
class JobRun:
    pods: list[Pod] = field(default_factory=list)
    succeeded: bool = False
    reason: str = ""


def job_pod(job: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The pod the Job controller creates: `<job>-<5 random>`, labelled with the job's name."""
    template = json.loads(json.dumps(job["spec"]["template"]))
    meta = template.setdefault("metadata", {})
    meta["name"] = f"{job['metadata']['name']}-{kuberay.suffix(rng)}"
    meta["namespace"] = job["metadata"].get("namespace", "default")
    meta.setdefault("labels", {}).update({"job-name": job["metadata"]["name"], "batch.kubernetes.io/job-name":
                                          job["metadata"]["name"]})  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def start_job(kubelet: Kubelet, job: dict[str, Any], rng: random.Random) -> JobRun:
    run = JobRun()
    run.pods.append(kubelet.run(job_pod(job, rng)))
    return run


def follow_job(kubelet: Kubelet, job: dict[str, Any], run: JobRun, rng: random.Random, timeout: float) -> JobRun:
    """Waits for the Job to complete or fail: a failed pod (or a container restarted in place, with
    restartPolicy OnFailure) counts against backoffLimit; past it the Job fails."""
    limit = job["spec"].get("backoffLimit", 6)
    deadline = time.time() + timeout
    while time.time() < deadline:
        pod = run.pods[-1]
        failures = len(run.pods) - 1 + sum(c.restarts for c in pod.containers)
        if pod.phase is Phase.SUCCEEDED:
            run.succeeded = True
            return run
        if failures > limit:
            run.reason = f"BackoffLimitExceeded: {failures} failures ({pod.reason})"
            return run
        if pod.phase is Phase.FAILED:
            run.pods.append(kubelet.run(job_pod(job, rng)))
        time.sleep(0.5)
    run.reason = "the Job did not finish within the test's deadline"
    return run


def deployment_pods(kubelet: Kubelet, deployment: dict[str, Any], rng: random.Random) -> list[Pod]:
    """A Deployment's replicas (its ReplicaSet's pods: `<name>-<hash>-<5 random>`)."""
    template = deployment["spec"]["template"]
    pods = []
    for _ in range(deployment["spec"].get("replicas", 1)):
        meta = {**json.loads(json.dumps(template.get("metadata", {})))}
        meta["name"] = (
            f"{deployment['metadata']['name']}-{kuberay.suffix(rng)}{kuberay.suffix(rng)}-{kuberay.suffix(rng)}"
        )
        meta["namespace"] = deployment["metadata"].get("namespace", "default")
        pods.append(kubelet.run({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}))
    return pods


@dataclass
class RayJobRun:
    cluster: dict[str, Any]
    job_id: str
    head: Pod
    workers: list[Pod]
    dashboard: str = ""
    submitter: JobRun | None = None
    job_status: str = ""
    deployment_status: str = "Initializing"
    reason: str = ""
    timeline: dict[str, float] = field(default_factory=dict)  # seconds since the RayJob was applied
    job_info: dict[str, Any] = field(default_factory=dict)


def _get(kubelet: Kubelet, url: str, timeout: float = 5) -> tuple[int, bytes]:
    """An HTTP GET from the node, the cluster's names resolved by its DNS records."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    address = kubelet.network.records.get(name, name)

    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/{rest}", timeout=timeout) as response:
                return response.status, response.read()
        except Exception:
            return 0, b""

    return kubelet.network.call(get)


def start_rayjob(kubelet: Kubelet, rayjob: dict[str, Any], rng: random.Random) -> RayJobRun:
    """What the operator does when the RayJob is applied: the RayCluster's pods and services."""
    started = time.time()
    cluster, job_id = kuberay.rayjob_cluster(rayjob, rng)
    head = kubelet.run(kuberay.head_pod(cluster, rng))
    workers = [
        kubelet.run(kuberay.worker_pod(cluster, group, rng))
        for group in cluster["spec"].get("workerGroupSpecs", [])
        for _ in range(max(group.get("replicas", 0), group.get("minReplicas", 0)))
    ]
    run = RayJobRun(cluster, job_id, head, workers)
    while not head.ip:
        if head.phase is Phase.FAILED:
            raise RuntimeError(f"the head pod failed: {head.reason}")
        time.sleep(0.05)
    names = kuberay.ClusterNames(cluster["metadata"]["name"], cluster["metadata"]["namespace"])
    job_service = kuberay.ClusterNames(rayjob["metadata"]["name"], names.namespace)
    for fqdn in (names.fqdn, job_service.fqdn):  # the RayCluster's head service and the RayJob's
        kubelet.network.records[fqdn] = head.ip
    run.timeline["applied"] = started
    return run


def follow_rayjob(kubelet: Kubelet, rayjob: dict[str, Any], run: RayJobRun, rng: random.Random,
                  timeout: float) -> RayJobRun:  # fmt: skip
    """The RayJob controller from the cluster's pods on: Ready, submitter, status, shutdown."""
    spec = rayjob["spec"]
    started = run.timeline["applied"]
    ready_by = started + min(spec.get("preRunningDeadlineSeconds", timeout), timeout)
    pods = [run.head, *run.workers]
    names = kuberay.ClusterNames(run.cluster["metadata"]["name"], run.cluster["metadata"]["namespace"])
    run.dashboard = kuberay.dashboard_url(run.cluster, names)
    while not all(p.ready for p in pods):
        if "jobs_api" not in run.timeline and _get(kubelet, f"http://{run.dashboard}/api/version", 1)[0] == 200:
            run.timeline["jobs_api"] = round(time.time() - started, 1)
        failed = [p for p in pods if p.phase is Phase.FAILED]
        crashing = [(p, c) for p in pods for c in p.containers if c.restarts >= CRASH_LOOP]
        if failed or crashing or time.time() > ready_by:
            run.deployment_status = "Failed"
            run.reason = f"the RayCluster never became Ready: {[(p.name, p.phase.value, p.reason) for p in pods]}"
            run.reason += "".join(
                f"; {p.name}/{c.name} in CrashLoopBackOff: {p.log(c.name)[-1500:]}" for p, c in crashing
            )
            return run
        time.sleep(0.5)
    run.timeline["cluster_ready"] = round(time.time() - started, 1)
    job = kuberay.submitter_job(rayjob, run.cluster, run.dashboard, run.job_id)
    run.submitter = start_job(kubelet, job, rng)
    run.deployment_status = "Running"
    deadline = started + min(spec.get("activeDeadlineSeconds", timeout), timeout)
    while time.time() < deadline:
        code, body = _get(kubelet, f"http://{run.dashboard}/api/jobs/{run.job_id}")
        if code == 200:
            run.job_info = json.loads(body)
            status = run.job_info.get("status", "")
            if status and "job_submitted" not in run.timeline:
                run.timeline["job_submitted"] = round(time.time() - started, 1)
            run.job_status = status
            if status in TERMINAL:
                run.deployment_status = "Complete" if status == "SUCCEEDED" else "Failed"
                run.timeline["job_finished"] = round(time.time() - started, 1)
                follow_job(kubelet, job, run.submitter, rng, timeout=60)
                return run
        time.sleep(2)
    run.deployment_status, run.reason = "Failed", "DeadlineExceeded"
    return run


def shutdown(kubelet: Kubelet, run: RayJobRun) -> None:
    """shutdownAfterJobFinishes: the cluster's pods deleted (the submitter's too)."""
    for pod in [*(run.submitter.pods if run.submitter else []), *run.workers, run.head]:
        kubelet.delete(pod, grace=10)
