"""What the KubeRay operator v1.7.0 makes of a rendered RayJob, reimplemented from its source as
plain functions over manifests (ray-operator/controllers/ray/common/pod.go, job.go, service.go and
rayjob_controller.go at tag v1.7.0): the RayCluster it creates, the head and worker pods it
builds from their templates (the `ray start` command generated from `rayStartParams` and the
container's resources, the environment it injects, the /dev/shm volume, the wait-gcs-ready init
container, the HTTP probes of Ray >= 2.53, the autoscaler sidecar), the head service's name and
ports, and the K8sJobMode submitter Job with its command.

Only what the project renders is covered; a RayCluster using a feature not reimplemented here
(GCS fault tolerance, TLS, group-level resources or labels, an overwritten container command,
autoscaler v2, token auth) is refused with one line instead of being run differently.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any

import yaml

from study.errors import SpecError

KUBERAY_VERSION = "v1.7.0"
GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
METRICS_PORT = 8080
SERVE_PORT = 8000
AGENT_PORT = 52365  # the dashboard agent: the probes' port
HEALTH_PATH = "/api/healthz"  # Ray >= 2.53: one endpoint for raylet and GCS
CLUSTER_DOMAIN = "cluster.local"
UNIFIED_HEALTH_CHECK = (2, 53, 0)
GCS_HEALTH_TIMEOUT_S = 10  # utils.RayDashboardGCSHealthCheckTimeoutSeconds
SUBMITTER_BACKOFF_LIMIT = 2

CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
GROUP_LABEL = "ray.io/group"
HEAD_GROUP = "headgroup"


class NodeType(Enum):
    HEAD = "head"
    WORKER = "worker"


def bash(options: str = "c") -> list[str]:
    """utils.GetContainerCommand: the shell KubeRay runs its generated commands with."""
    return ["/bin/bash", f"-{options}", "--"]


_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery's rand.String alphabet


def suffix(rng: random.Random) -> str:
    return "".join(rng.choice(_SUFFIX) for _ in range(5))


_QUANTITY = re.compile(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?")
_FACTORS = {
    None: Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15),
    "E": Fraction(10**18), "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
    "Ti": Fraction(2**40), "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}  # fmt: skip


def quantity(value: Any) -> Fraction:
    """A Kubernetes resource quantity ("500m", "8Gi", 2) as an exact number."""
    m = _QUANTITY.fullmatch(str(value))
    if not m:
        raise SpecError(f"{value!r} is not a Kubernetes quantity")
    return Fraction(m.group(1)) * _FACTORS[m.group(2)]


def quantity_value(value: Any) -> int:
    """resource.Quantity.Value(): rounded up to an integer."""
    return math.ceil(quantity(value))


@dataclass(frozen=True)
class ClusterNames:
    cluster: str
    namespace: str

    @property
    def head_service(self) -> str:
        return f"{self.cluster}-head-svc"

    @property
    def fqdn(self) -> str:
        """utils.GenerateFQDNServiceName: how workers and the submitter reach the head."""
        return f"{self.head_service}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


def rayjob_cluster(rayjob: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """The RayCluster a RayJob's controller creates (`<rayjob>-<5 random>`) and the job id it
    submits under (`<rayjob>-<5 random>`)."""
    meta = rayjob["metadata"]
    labels = {
        **meta.get("labels", {}),
        "ray.io/originated-from-cr-name": meta["name"],
        "ray.io/originated-from-crd": "RayJob",
        "ray.io/job-submission-mode": rayjob["spec"].get("submissionMode", "K8sJobMode"),
    }
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": f"{meta['name']}-{suffix(rng)}", "namespace": meta.get("namespace", "default"),
                     "labels": labels},
        "spec": copy.deepcopy(rayjob["spec"]["rayClusterSpec"]),
    }  # fmt: skip
    _check_supported(cluster)
    return cluster, f"{meta['name']}-{suffix(rng)}"


def _check_supported(cluster: dict[str, Any]) -> None:
    spec = cluster["spec"]
    unsupported = [k for k in ("gcsFaultToleranceOptions", "tlsOptions", "authOptions") if k in spec]
    if spec.get("autoscalerOptions", {}).get("version"):
        unsupported.append("autoscalerOptions.version")
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    unsupported += [k for g in groups for k in ("resources", "labels") if k in g]
    if cluster["metadata"].get("annotations", {}).get("ray.io/overwrite-container-cmd") == "true":
        unsupported.append("ray.io/overwrite-container-cmd")
    if unsupported:
        raise SpecError(
            f"RayCluster {cluster['metadata']['name']} uses {', '.join(unsupported)}, which the local KubeRay "
            f"reimplementation (study/deploy/local/kuberay.py) does not cover"
        )


def service_ports(cluster: dict[str, Any]) -> dict[str, int]:
    """service.go getServicePorts: the head container's named ports (defaults when it has none),
    plus the metrics port."""
    container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p.get("name") or f"{p['containerPort']}-port": int(p["containerPort"]) for p in container.get("ports", [])}
    if not ports:
        ports = {"client": CLIENT_PORT, "gcs-server": GCS_PORT, "dashboard": DASHBOARD_PORT, "serve": SERVE_PORT}
    ports.setdefault("metrics", METRICS_PORT)
    return ports


def dashboard_url(cluster: dict[str, Any], names: ClusterNames) -> str:
    """utils.FetchHeadServiceURL: the head service's FQDN and its port named `dashboard`."""
    port = service_ports(cluster).get("dashboard")
    if port is None:
        raise SpecError(f"RayCluster {names.cluster}: the head service has no port named 'dashboard'")
    return f"{names.fqdn}:{port}"


def head_port(cluster: dict[str, Any]) -> str:
    """common.GetHeadPort: the GCS port workers join."""
    return str(cluster["spec"]["headGroupSpec"].get("rayStartParams", {}).get("port", GCS_PORT))


def _missing_start_params(node: NodeType, params: dict[str, str], port: str, fqdn: str) -> dict[str, str]:
    """common.setMissingRayStartParams."""
    params = dict(params)
    if node is NodeType.WORKER:
        params.setdefault("address", f"{fqdn}:{port}")
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", str(METRICS_PORT))
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(AGENT_PORT))
    return params


def _is_gpu(key: str) -> bool:
    return key.endswith("gpu") or re.search(r"nvidia\.com/mig-\d+g\.\d+gb$", key) is not None


def ray_start_command(node: NodeType, params: dict[str, str], resources: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """common.generateRayStartCommand: `ray start [--head]` with the params (num-cpus, memory and
    num-gpus filled in from the container's limits), flags sorted by name."""
    params = {k: str(v) for k, v in params.items()}
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    if "num-cpus" not in params:
        cpu = limits.get("cpu") or requests.get("cpu")
        if cpu is not None and quantity(cpu) != 0:
            params["num-cpus"] = str(quantity_value(cpu))
    if "memory" not in params and limits.get("memory") is not None and quantity(limits["memory"]) != 0:
        params["memory"] = str(quantity_value(limits["memory"]))
    for key in sorted(limits):
        if "num-gpus" not in params and _is_gpu(key) and quantity(limits[key]) != 0:
            params["num-gpus"] = str(quantity_value(limits[key]))
    head = "ray start --head" if node is NodeType.HEAD else "ray start"
    return f"{head} {convert_param_map(params)}", params


def convert_param_map(params: dict[str, str]) -> str:
    """common.convertParamMap: ` --key=value ` per param, `true` as a bare flag, `false` dropped
    (except for log-color, include-dashboard, include-log-monitor, which take the value)."""
    special = {"log-color", "include-dashboard", "include-log-monitor"}
    out = ""
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in special:
            if value.lower() == "true":
                out += f" --{key} "
        else:
            out += f" --{key}={value} "
    return out


def _version(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(g or 0) for g in m.groups()) if m else ()


def _probes(container: dict[str, Any], node: NodeType, params: dict[str, str], ray_version: str) -> None:
    """common.initLivenessAndReadinessProbe (for a RayCluster or RayJob, not a RayService)."""
    agent = int(params.get("dashboard-agent-listen-port", AGENT_PORT))
    head = node is NodeType.HEAD
    if _version(ray_version) >= UNIFIED_HEALTH_CHECK:
        action: dict[str, Any] = {"httpGet": {"path": HEALTH_PATH, "port": agent}}
    else:
        raylet = f"wget --tries 1 -T 2 -q -O- http://localhost:{agent}/api/local_raylet_healthz | grep success"
        dashboard = int(params.get("dashboard-port", DASHBOARD_PORT))
        gcs = f"wget --tries 1 -T 10 -q -O- http://localhost:{dashboard}/api/gcs_healthz | grep success"
        action = {"exec": {"command": ["bash", "-c", " && ".join([raylet, gcs] if head else [raylet])]}}
    timeout = 5 if head else 2
    container.setdefault(
        "livenessProbe",
        {**copy.deepcopy(action), "initialDelaySeconds": 30, "timeoutSeconds": timeout, "periodSeconds": 5,
         "successThreshold": 1, "failureThreshold": 120},
    )  # fmt: skip
    container.setdefault(
        "readinessProbe",
        {**copy.deepcopy(action), "initialDelaySeconds": 10, "timeoutSeconds": timeout, "periodSeconds": 5,
         "successThreshold": 1, "failureThreshold": 10},
    )  # fmt: skip


def _add_empty_dir(container: dict, pod: dict, name: str, path: str, medium: str = "") -> None:
    """common.addEmptyDir: a Memory emptyDir is sized by the container's memory limit (or request)."""
    if any(m["mountPath"] == path for m in container.get("volumeMounts", [])):
        return
    volumes = pod.setdefault("volumes", [])
    if not any(v["name"] == name for v in volumes):
        empty: dict[str, Any] = {}
        if medium == "Memory":
            memory = container.get("resources", {}).get("limits", {}).get("memory") or container.get(
                "resources", {}
            ).get("requests", {}).get("memory")
            empty = {"medium": "Memory", **({"sizeLimit": memory} if memory else {})}
        volumes.append({"name": name, "emptyDir": empty})
    container.setdefault("volumeMounts", []).append({"mountPath": path, "name": name})


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def _has(env: list[dict], name: str) -> bool:
    return any(e["name"] == name for e in env)


def _container_env(container: dict, node: NodeType, fqdn: str, port: str, start: str, crd: str) -> None:
    """common.setContainerEnvVars."""
    env = container.setdefault("env", [])
    ip = "127.0.0.1"
    if node is NodeType.WORKER:
        ip = fqdn
        env += [{"name": "FQ_RAY_IP", "value": ip}, {"name": "RAY_IP", "value": fqdn.split(".")[0]}]
    env += [
        {"name": "RAY_CLUSTER_NAME", **_field(f"metadata.labels['{CLUSTER_LABEL}']")},
        {"name": "RAY_CLUSTER_NAMESPACE", **_field("metadata.namespace")},
        {"name": "RAY_CLOUD_INSTANCE_ID", **_field("metadata.name")},
        {"name": "RAY_NODE_TYPE_NAME", **_field(f"metadata.labels['{GROUP_LABEL}']")},
        {"name": "KUBERAY_GEN_RAY_START_CMD", "value": start},
    ]
    if not _has(env, "RAY_PORT"):
        env.append({"name": "RAY_PORT", "value": port})
    if not _has(env, "RAY_ADDRESS"):
        env.append({"name": "RAY_ADDRESS", "value": f"{ip}:{port}"})
    if not _has(env, "RAY_USAGE_STATS_KUBERAY_IN_USE"):
        env.append({"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"})
    if node is NodeType.HEAD:
        tags = f"kuberay_version={KUBERAY_VERSION};kuberay_crd={crd}"
        env.append({"name": "RAY_USAGE_STATS_EXTRA_TAGS", "value": tags})
    if not _has(env, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"):
        env.append({"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"})


def _pod_labels(node: NodeType, cluster: str, group: str, template_labels: dict[str, str]) -> dict[str, str]:
    """common.labelPod: KubeRay's labels, then the template's (except the three it owns)."""
    labels = {
        "ray.io/is-ray-node": "yes",
        CLUSTER_LABEL: cluster,
        NODE_TYPE_LABEL: node.value,
        GROUP_LABEL: group,
        "ray.io/identifier": f"{cluster}-{node.value}"[:63],
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    for key, value in template_labels.items():
        if key not in (NODE_TYPE_LABEL, GROUP_LABEL, CLUSTER_LABEL):
            labels[key] = value
    return labels


def _pod_name_prefix(prefix: str, node: NodeType) -> str:
    """utils.PodName with generateName: at most 50 characters of prefix, then `-head-`/`-worker-`."""
    return f"{prefix[:50]}-{node.value}-".lower()


def autoscaler_container(image: str, options: dict[str, Any]) -> dict[str, Any]:
    """common.BuildAutoscalerContainer with the RayCluster's autoscalerOptions merged in."""
    start = "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    container: dict[str, Any] = {
        "name": "autoscaler",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "RAY_CLUSTER_NAME", **_field(f"metadata.labels['{CLUSTER_LABEL}']")},
            {"name": "RAY_CLUSTER_NAMESPACE", **_field("metadata.namespace")},
            {"name": "RAY_HEAD_POD_NAME", **_field("metadata.name")},
            {"name": "KUBERAY_CRD_VER", "value": "v1"},
            {"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": start},
        ],
        "command": bash(),
        "args": [start],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "500m", "memory": "512Mi"}},
    }
    for key in ("resources", "image", "imagePullPolicy", "securityContext", "command", "args"):
        if options.get(key):
            container[key] = copy.deepcopy(options[key])
    for key in ("env", "envFrom", "volumeMounts"):
        if options.get(key):
            container.setdefault(key, []).extend(copy.deepcopy(options[key]))
    return container


def _build_pod(
    template: dict[str, Any],
    node: NodeType,
    params: dict[str, str],
    port: str,
    fqdn: str,
    crd: str,
    ray_version: str,
    autoscaling: bool,
) -> dict[str, Any]:
    """common.BuildPod: /dev/shm, the generated command, the injected env, the probes."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"], "spec": template["spec"]}
    spec = pod["spec"]
    ray = spec["containers"][0]
    if "plasma-directory" not in params:
        _add_empty_dir(ray, spec, "shared-mem", "/dev/shm", "Memory")
    if node is NodeType.HEAD and autoscaling:
        autoscaler = next(c for c in spec["containers"] if c["name"] == "autoscaler")
        _add_empty_dir(ray, spec, "ray-logs", "/tmp/ray")
        _add_empty_dir(autoscaler, spec, "ray-logs", "/tmp/ray")
    user = "".join(f" {part} " for part in [*ray.get("command", []), *ray.get("args", [])])
    start, params = ray_start_command(node, params, ray.get("resources", {}))
    if "ray start" not in user:
        generated = f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {start}"
        ray["command"] = bash()
        ray["args"] = [f"{user} && {generated}" if user else generated]
    for init in spec.get("initContainers", []):
        init.setdefault("env", []).extend(
            [{"name": "FQ_RAY_IP", "value": fqdn}, {"name": "RAY_IP", "value": fqdn.split(".")[0]}]
        )
    _container_env(ray, node, fqdn, port, start, crd)
    _probes(ray, node, params, ray_version)
    return pod


def head_pod(cluster: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """raycluster_controller.buildHeadPod: common.DefaultHeadPodTemplate then common.BuildPod."""
    spec, meta = cluster["spec"], cluster["metadata"]
    names = ClusterNames(meta["name"], meta.get("namespace", "default"))
    group = spec["headGroupSpec"]
    template = copy.deepcopy(group["template"])
    template.setdefault("metadata", {})
    template["metadata"]["name"] = _pod_name_prefix(names.cluster, NodeType.HEAD) + suffix(rng)
    template["metadata"]["namespace"] = names.namespace
    template["metadata"]["labels"] = _pod_labels(
        NodeType.HEAD, names.cluster, HEAD_GROUP, template["metadata"].get("labels", {})
    )
    port = head_port(cluster)
    params = _missing_start_params(NodeType.HEAD, group.get("rayStartParams", {}), port, "")
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    containers = template["spec"]["containers"]
    if autoscaling:
        params["no-monitor"] = "true"
        template["spec"]["serviceAccountName"] = names.cluster[:50]
        containers.append(autoscaler_container(containers[0]["image"], spec.get("autoscalerOptions", {})))
    template["metadata"].setdefault("annotations", {})["ray.io/ft-enabled"] = "false"
    if not any(p.get("name") == "metrics" for p in containers[0].get("ports", [])):
        containers[0].setdefault("ports", []).append({"name": "metrics", "containerPort": METRICS_PORT})
    crd = meta.get("labels", {}).get("ray.io/originated-from-crd", "RayCluster")
    return _build_pod(template, NodeType.HEAD, params, port, names.fqdn, crd, spec.get("rayVersion", ""), autoscaling)


def worker_pod(cluster: dict[str, Any], group: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """raycluster_controller.buildWorkerPod: common.DefaultWorkerPodTemplate (the wait-gcs-ready
    init container first) then common.BuildPod."""
    spec, meta = cluster["spec"], cluster["metadata"]
    names = ClusterNames(meta["name"], meta.get("namespace", "default"))
    port = head_port(cluster)
    template = copy.deepcopy(group["template"])
    template.setdefault("metadata", {})
    ray = template["spec"]["containers"][0]
    wait = f"""
					SECONDS=0
					while true; do
						if (( SECONDS <= 120 )); then
							if ray health-check --address {names.fqdn}:{port} > /dev/null 2>&1; then
								echo "GCS is ready."
								break
							fi
							echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."
						else
							if ray health-check --address {names.fqdn}:{port}; then
								echo "GCS is ready. Any error messages above can be safely ignored."
								break
							fi
							echo "$SECONDS seconds elapsed: Still waiting for GCS to be ready. For troubleshooting, refer to the FAQ at https://docs.ray.io/en/master/cluster/kubernetes/troubleshooting.html."
						fi
						sleep 5
					done
				"""  # noqa: W191, E101 (KubeRay's own tabs)
    init = {
        "name": "wait-gcs-ready",
        "image": ray["image"],
        "imagePullPolicy": ray.get("imagePullPolicy", "IfNotPresent"),
        "command": bash(),
        "args": [wait],
        "securityContext": copy.deepcopy(ray.get("securityContext", {})),
        "env": copy.deepcopy(ray.get("env", [])),
        "volumeMounts": copy.deepcopy(ray.get("volumeMounts", [])),
        "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "200m", "memory": "256Mi"}},
    }
    template["spec"].setdefault("initContainers", []).append(init)
    template["metadata"]["name"] = _pod_name_prefix(f"{names.cluster}-{group['groupName']}", NodeType.WORKER) + suffix(
        rng
    )
    template["metadata"]["namespace"] = names.namespace
    template["metadata"]["labels"] = _pod_labels(
        NodeType.WORKER, names.cluster, group["groupName"], template["metadata"].get("labels", {})
    )
    params = _missing_start_params(NodeType.WORKER, group.get("rayStartParams", {}), port, names.fqdn)
    if not any(p.get("name") == "metrics" for p in ray.get("ports", [])):
        ray.setdefault("ports", []).append({"name": "metrics", "containerPort": METRICS_PORT})
    crd = meta.get("labels", {}).get("ray.io/originated-from-crd", "RayCluster")
    return _build_pod(
        template, NodeType.WORKER, params, port, names.fqdn, crd, spec.get("rayVersion", ""),
        bool(spec.get("enableInTreeAutoscaling")),
    )  # fmt: skip


def job_submit_command(rayjob: dict[str, Any], address: str, job_id: str) -> list[str]:
    """common.BuildJobSubmitCommand for K8sJobMode: wait for the dashboard's GCS health, submit
    unless the job id already exists (a retried submitter), then follow the job's logs."""
    spec = rayjob["spec"]
    address = address if address.startswith("http://") else f"http://{address}"
    health = (
        'python -c "import urllib.request; r=urllib.request.urlopen('
        f"'{address}/api/gcs_healthz', timeout={GCS_HEALTH_TIMEOUT_S}); exit(0 if b'success' in r.read() else 1)\""
    )
    waiting = json.dumps(f"Waiting for Ray Dashboard GCS to become healthy at {address} ...")
    cmd = ["until", health, ">/dev/null", "2>&1", ";", "do", "echo", waiting, ";", "sleep", "2", ";", "done", ";"]
    cmd += ["if", "!", "ray", "job", "status", "--address", address, job_id, ">/dev/null", "2>&1", ";", "then"]
    cmd += ["ray", "job", "submit", "--address", address, "--no-wait"]
    if spec.get("runtimeEnvYAML"):
        cmd += ["--runtime-env-json", json.dumps(json.dumps(yaml.safe_load(spec["runtimeEnvYAML"])))]
    if spec.get("metadata"):
        cmd += ["--metadata-json", json.dumps(json.dumps(spec["metadata"]))]
    cmd += ["--submission-id", job_id]
    if spec.get("entrypointNumCpus", 0) > 0:
        cmd += ["--entrypoint-num-cpus", f"{spec['entrypointNumCpus']:f}"]
    if spec.get("entrypointNumGpus", 0) > 0:
        cmd += ["--entrypoint-num-gpus", f"{spec['entrypointNumGpus']:f}"]
    if spec.get("entrypointResources"):
        cmd += ["--entrypoint-resources", json.dumps(spec["entrypointResources"])]
    cmd += ["--", spec["entrypoint"].strip(), ";", "fi", ";"]
    cmd += ["ray", "job", "logs", "--address", address, "--follow", job_id]
    return cmd


def submitter_job(rayjob: dict[str, Any], cluster: dict[str, Any], address: str, job_id: str) -> dict[str, Any]:
    """rayjob_controller.createNewK8sJob with getSubmitterTemplate: the rendered submitter pod
    template given KubeRay's command (when it sets none) and environment."""
    meta = rayjob["metadata"]
    template = copy.deepcopy(rayjob["spec"].get("submitterPodTemplate"))
    if template is None:
        head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        template = {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "ray-job-submitter", "image": head["image"],
                                "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                              "requests": {"cpu": "500m", "memory": "200Mi"}}}],
            }
        }  # fmt: skip
    container = template["spec"]["containers"][0]
    if not container.get("command"):
        container["command"] = bash("ce")
        container["args"] = [" ".join(job_submit_command(rayjob, address, job_id))]
    container.setdefault("env", []).extend(
        [
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "RAY_DASHBOARD_ADDRESS", "value": address},
            {"name": "RAY_JOB_SUBMISSION_ID", "value": job_id},
        ]
    )
    template.setdefault("metadata", {}).setdefault("labels", {}).update(
        {
            "ray.io/originated-from-cr-name": meta["name"],
            "ray.io/originated-from-crd": "RayJob",
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
    )
    backoff = rayjob["spec"].get("submitterConfig", {}).get("backoffLimit", SUBMITTER_BACKOFF_LIMIT)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default")},
        "spec": {"backoffLimit": backoff, "template": template},
    }
