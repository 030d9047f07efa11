"""The local cluster's parts, offline (the pods themselves run in tests/cluster/, `make
test-cluster`): the Dockerfile as the image builder reads it, KubeRay v1.7.0's generated commands
for the rendered RayJob against strings written out by hand from its source's format, the
securityContext as a runtime applies it, the cluster DNS, and the ulimit line of KubeRay's start
command under the render's environment."""

import os
import random
import resource
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from study.deploy.k8s import K8sOptions, render
from study.deploy.local import kuberay, oci
from study.deploy.local.dockerfile import BuildContext, ImageConfig, Op, image_config, parse
from study.deploy.local.network import ClusterDNS
from study.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
SPACE = str(ROOT / "search_spaces/studies/fashion_mnist_demo.yaml")


def rayjob(**kw):
    opts = K8sOptions(image="lottery-study:ci", profile="cpu-dev", existing_claim="team-lake", **kw)
    return next(o for o in render(SPACE, opts) if o["kind"] == "RayJob")


def test_the_dockerfile_reads_as_the_image_builder_follows_it():
    instructions = parse((ROOT / "k8s" / "Dockerfile").read_text(), {"PATH": "/usr/bin"})
    assert instructions[0].op is Op.FROM and instructions[0].args == ("python:3.11-slim-bookworm",)
    runs = [i for i in instructions if i.op is Op.RUN]
    assert runs[0].args[:2] == ("/bin/sh", "-c") and runs[0].args[2].startswith("apt-get update && apt-get install")
    assert "useradd --uid 1000" in runs[0].args[2], "continuation lines joined"
    copies = [i.args for i in instructions if i.op is Op.COPY]
    assert (
        copies[0] == ("pyproject.toml", "./")
        and ("README.md", "app.py", "./") in copies
        and ("study", "./study") in copies
    )
    config = image_config(instructions, ImageConfig(env=(("PATH", "/usr/bin"),)))
    assert (config.user, config.uid, config.gid, config.workdir) == ("1000:1000", 1000, 1000, "/opt/study")
    assert config.env_dict() == {"PATH": "/usr/bin", "HOME": "/home/study"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("FROM a\nADD x /x\n", "ADD is not supported"),
        ("FROM a\nUSER study\n", "must be a numeric uid"),
        ("FROM a AS b\n", "FROM takes one image"),
        ("FROM a\nFROM b\n", "a second FROM"),
        ("RUN true\n", "the first instruction must be FROM"),
        ("FROM a\nCOPY --chown=1 a b\n", "COPY flags"),
        ("FROM a\nRUN true \\\n", "ends with a line continuation"),
    ],
)
def test_a_dockerfile_the_builder_cannot_follow_is_refused_by_line(text, expected):
    with pytest.raises(SpecError, match=expected):
        parse(text)


def test_env_expands_as_docker_does():
    ins = parse('FROM a\nENV A=1 B="$A two" C=${A}x\nENV D legacy form $C\nWORKDIR /w/$A\n', {"PATH": "/bin"})
    assert dict(ins[1].env) == {"A": "1", "B": "1 two", "C": "1x"} and dict(ins[2].env) == {"D": "legacy form 1x"}
    assert ins[3].args == ("/w/1",)


def test_dockerignore_excludes_folders_globs_and_takes_back_negations(tmp_path):
    for rel in ("study/a.py", "study/__pycache__/a.pyc", "study/sub/__pycache__/b.pyc", "x.egg-info/PKG",
                "study/keep.parquet", "study/drop.parquet", "tests/t.py"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / ".dockerignore").write_text("**/__pycache__\n*.egg-info\ntests\n**/*.parquet\n!study/keep.parquet\n")
    context = BuildContext.of(tmp_path)
    assert [rel for rel, _ in context.files("study")] == ["a.py", "keep.parquet"]
    with pytest.raises(SpecError, match="excluded by .dockerignore"):
        context.files("tests")


def test_kuberay_builds_the_head_pod_from_the_rendered_rayjob():
    cluster, job_id = kuberay.rayjob_cluster(rayjob(), random.Random(0))
    name = cluster["metadata"]["name"]
    assert name.startswith("study-fashion-mnist-demo-") and job_id.startswith("study-fashion-mnist-demo-")
    pod = kuberay.head_pod(cluster, random.Random(1))
    ray, autoscaler = pod["spec"]["containers"]
    assert pod["metadata"]["name"].startswith(f"{name}-head-")
    assert ray["command"] == ["/bin/bash", "-c", "--"]
    # common.convertParamMap: " --key=value " per param, sorted, `true` a bare flag; memory from the 8Gi limit
    assert ray["args"] == [
        "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start --head  --block  --dashboard-agent-listen-port=52365 "
        " --dashboard-host=0.0.0.0  --memory=8589934592  --metrics-export-port=8080  --no-monitor  --num-cpus=0 "
    ]
    probe = {"httpGet": {"path": "/api/healthz", "port": 52365}, "timeoutSeconds": 5, "periodSeconds": 5,
             "successThreshold": 1}  # fmt: skip
    assert ray["readinessProbe"] == {**probe, "initialDelaySeconds": 10, "failureThreshold": 10}
    assert ray["livenessProbe"] == {**probe, "initialDelaySeconds": 30, "failureThreshold": 120}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in ray["env"]}
    assert env["RAY_ADDRESS"] == "127.0.0.1:6379" and env["RAY_PORT"] == "6379"
    assert env["RAY_CLUSTER_NAME"] == {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}
    assert env["RAY_USAGE_STATS_EXTRA_TAGS"] == "kuberay_version=v1.7.0;kuberay_crd=RayJob"
    assert env["RAY_START_ULIMIT_OPEN_FILES"] == "hard", "the render's fix reaches the container"
    volumes = {v["name"]: v["emptyDir"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
    assert volumes == {"shared-mem": {"medium": "Memory", "sizeLimit": "8Gi"}, "ray-logs": {}}
    assert {m["mountPath"] for m in ray["volumeMounts"]} >= {"/dev/shm", "/tmp/ray", "/mnt/lake", "/etc/study"}
    assert autoscaler["args"] == [
        "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
    ]
    assert autoscaler["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {p["name"]: p["containerPort"] for p in ray["ports"]}["metrics"] == 8080
    assert kuberay.dashboard_url(cluster, kuberay.ClusterNames(name, "default")) == (
        f"{name}-head-svc.default.svc.cluster.local:8265"
    )


def test_kuberay_builds_the_worker_pod_with_its_wait_for_the_gcs():
    cluster, _ = kuberay.rayjob_cluster(rayjob(worker_cpus=3, worker_memory="5Gi"), random.Random(0))
    name = cluster["metadata"]["name"]
    pod = kuberay.worker_pod(cluster, cluster["spec"]["workerGroupSpecs"][0], random.Random(2))
    (ray,) = pod["spec"]["containers"]
    fqdn = f"{name}-head-svc.default.svc.cluster.local"
    assert pod["metadata"]["name"].startswith(f"{name}-cpu-worker-")
    assert ray["args"] == [
        f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; ray start  --address={fqdn}:6379  --block "
        " --dashboard-agent-listen-port=52365  --memory=5368709120  --metrics-export-port=8080  --num-cpus=3 "
    ]
    assert ray["readinessProbe"]["timeoutSeconds"] == 2 and ray["readinessProbe"]["httpGet"]["port"] == 52365
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == "wait-gcs-ready" and init["command"] == ["/bin/bash", "-c", "--"]
    assert f"ray health-check --address {fqdn}:6379 > /dev/null 2>&1" in init["args"][0]
    assert init["securityContext"] == ray["securityContext"]
    init_env = [e["name"] for e in init["env"]]
    rendered = [e["name"] for e in cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"]]
    assert init_env == [*rendered, "FQ_RAY_IP", "RAY_IP"], "the Ray container's own env, then KubeRay's two"
    assert all(m["mountPath"] != "/dev/shm" for m in init["volumeMounts"]), "copied before /dev/shm is added"
    labels = pod["metadata"]["labels"]
    assert (labels["ray.io/node-type"], labels["ray.io/group"], labels["ray.io/cluster"]) == ("worker", "cpu", name)


def test_a_ray_version_before_2_53_gets_the_old_exec_probes():
    cluster, _ = kuberay.rayjob_cluster(rayjob(), random.Random(0))
    cluster["spec"]["rayVersion"] = "2.52.1"
    ray = kuberay.head_pod(cluster, random.Random(1))["spec"]["containers"][0]
    assert ray["readinessProbe"]["exec"]["command"] == [
        "bash",
        "-c",
        "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && "
        "wget --tries 1 -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success",
    ]


def test_kuberay_submits_the_rendered_entrypoint_from_the_submitter_job():
    job = rayjob()
    cluster, job_id = kuberay.rayjob_cluster(job, random.Random(0))
    address = "svc.default.svc.cluster.local:8265"
    submitter = kuberay.submitter_job(job, cluster, address, job_id)
    (container,) = submitter["spec"]["template"]["spec"]["containers"]
    url = f"http://{address}"
    assert container["command"] == ["/bin/bash", "-ce", "--"]
    assert container["args"] == [
        f"until python -c \"import urllib.request; r=urllib.request.urlopen('{url}/api/gcs_healthz', timeout=10); "
        f"exit(0 if b'success' in r.read() else 1)\" >/dev/null 2>&1 ; do echo \"Waiting for Ray Dashboard GCS to "
        f'become healthy at {url} ..." ; sleep 2 ; done ; if ! ray job status --address {url} {job_id} >/dev/null '
        f"2>&1 ; then ray job submit --address {url} --no-wait --submission-id {job_id} -- python -m study.cli tune "
        f"/etc/study/study.yaml --address auto ; fi ; ray job logs --address {url} --follow {job_id}"
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"PYTHONUNBUFFERED": "1", "RAY_DASHBOARD_ADDRESS": address, "RAY_JOB_SUBMISSION_ID": job_id}
    assert submitter["spec"]["backoffLimit"] == 2 and submitter["metadata"]["name"] == job["metadata"]["name"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False, "the rendered template is kept"


def test_a_cluster_feature_the_reimplementation_lacks_is_refused():
    job = rayjob()
    job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379"}
    with pytest.raises(SpecError, match="gcsFaultToleranceOptions"):
        kuberay.rayjob_cluster(job, random.Random(0))


def test_quantities_round_up_as_kubernetes_does():
    assert [kuberay.quantity_value(q) for q in ("500m", "2", "8Gi", "1.5", "1e3", "64Mi")] == [
        1, 2, 8 * 2**30, 2, 1000, 64 * 2**20,
    ]  # fmt: skip


RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                  "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_the_restricted_security_context_as_a_runtime_applies_it():
    who = oci.identity(RESTRICTED_POD, RESTRICTED, ImageConfig(user="1000:1000"), oci.ImageUsers())
    assert (who.uid, who.gid, who.groups, who.caps, who.no_new_privileges) == (1000, 1000, (1000,), frozenset(), True)
    default = oci.identity({}, {}, ImageConfig(), oci.ImageUsers())
    assert default.uid == 0 and default.caps == oci.DEFAULT_CAPS and not default.no_new_privileges
    added = oci.identity({}, {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}, ImageConfig(),
                         oci.ImageUsers())  # fmt: skip
    assert added.caps == {"CAP_NET_BIND_SERVICE"}
    with pytest.raises(oci.ContainerConfigError, match="runAsNonRoot and image will run as root"):
        oci.identity({"runAsNonRoot": True}, {}, ImageConfig(user="0"), oci.ImageUsers())
    users = oci.ImageUsers("root:x:0:0::/root:/bin/sh\nstudy:x:1000:1000::/home/study:/bin/bash\n",
                           "root:x:0:\nstudy:x:1000:\nlake:x:2000:study\n")  # fmt: skip
    image_user = oci.identity({"runAsNonRoot": True}, {}, ImageConfig(user="1000"), users)
    assert (image_user.uid, image_user.gid, image_user.groups) == (1000, 1000, (2000,))


@pytest.mark.skipif(not oci.SECCOMP_PROFILE.is_file(), reason="containers-common's profile is not installed")
def test_runtime_default_keeps_only_the_rules_the_containers_capabilities_meet():
    def action(profile, name):
        return [r["action"] for r in profile["syscalls"] if name in r["names"]]

    none = oci.runtime_default_seccomp(frozenset())
    admin = oci.runtime_default_seccomp(frozenset({"CAP_SYS_ADMIN"}))
    assert none["defaultAction"] == "SCMP_ACT_ERRNO" and none["defaultErrnoRet"] == 38
    assert action(none, "bpf") == ["SCMP_ACT_ERRNO"] and action(admin, "bpf") == ["SCMP_ACT_ALLOW"]
    assert action(none, "arch_prctl") == ["SCMP_ACT_ALLOW"] and not action(none, "s390_runtime_instr")
    assert none["architectures"][0] == "SCMP_ARCH_X86_64" and not any("add_key" in r["names"] for r in none["syscalls"])


def test_kubernetes_variable_references_expand_in_order():
    declared = oci.declared_env([("A", "x"), ("B", "$(A)-$(PATH)-$(NOPE)-$$(A)")])
    assert declared == {"A": "x", "B": "x-$(PATH)-$(NOPE)-$(A)"}, "the image's PATH is not the spec's"
    env = oci.process_env(ImageConfig(env=(("PATH", "/bin"), ("A", "image"))), declared, "h")
    assert env == {"HOSTNAME": "h", "PATH": "/bin", "A": "x", "B": declared["B"]}
    assert oci.argv({"name": "c", "args": ["$(A)"]}, ImageConfig(entrypoint=("run",)), declared) == ["run", "x"]


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_the_cluster_dns_answers_the_services_and_nothing_else():
    dns = ClusterDNS("unused", "10.0.0.1", {"svc.default.svc.cluster.local": "10.231.0.10"})
    answer = dns.answer(_query("SVC.default.svc.cluster.local"))
    ident, flags, _, count = struct.unpack("!HHHH", answer[:8])
    assert (ident, flags & 0xF, count) == (7, 0, 1) and socket.inet_ntoa(answer[-4:]) == "10.231.0.10"
    assert struct.unpack("!HH", dns.answer(_query("pypi.org"))[2:6])[0] & 0xF == 3, "NXDOMAIN: no upstream"
    assert struct.unpack("!HHHH", dns.answer(_query("svc.default.svc.cluster.local", 28))[:8])[3] == 0, "no AAAA"


def _as_nobody_with_hard_limit(hard: int):
    def drop() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        if os.geteuid() == 0:  # a process without capabilities, as in the restricted pod
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

    return drop


def test_kuberays_ulimit_line_with_the_rendered_environment_raises_the_soft_limit_without_privileges():
    """KubeRay's `ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}` on a node whose hard limit is below
    65536: with the render's RAY_START_ULIMIT_OPEN_FILES=hard it succeeds and the soft limit
    reaches the hard one; without it, it fails and Ray would keep the soft default."""
    cluster, _ = kuberay.rayjob_cluster(rayjob(), random.Random(0))
    ray = kuberay.head_pod(cluster, random.Random(1))["spec"]["containers"][0]
    line = ray["args"][0].split(";")[0]
    env = {e["name"]: e["value"] for e in ray["env"] if "value" in e and e["name"].startswith("RAY_START")}

    def run(environment):
        return subprocess.run(["bash", "-c", f"{line}; echo soft=$(ulimit -Sn)"], env=environment, capture_output=True,
                              text=True, preexec_fn=_as_nobody_with_hard_limit(4096))  # fmt: skip

    fixed, unfixed = run(env), run({})
    assert fixed.stderr == "" and fixed.stdout.strip() == "soft=4096", fixed
    assert "ulimit" in unfixed.stderr and unfixed.stdout.strip() == "soft=1024", unfixed
