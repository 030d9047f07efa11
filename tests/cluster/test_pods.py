"""The rendered pods come up and run a study (`make test-cluster`; root, crun, debootstrap).

The image is k8s/Dockerfile's, built as root-filesystem layers (study/deploy/local/rootfs.py).
The manifests are `study k8s ...`'s output, run by the local node (study/deploy/local/): the
staging Job, then the RayJob as KubeRay v1.7.0 would run it (head and CPU worker pods with the
wait-gcs-ready init container and the probes, the submitter Job), then the app Deployment. Every
container's security context is read from inside it; the probes' timings, the job's status and
the rows the study wrote are printed and kept in $STUDY_CLUSTER_REPORT (default
results/cluster-report.json).
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from study.deploy.k8s_checks import pod_templates
from study.deploy.local import controllers
from study.deploy.local.kubelet import local_node
from study.deploy.local.rootfs import build

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "lottery-study:ci"
STUDY = "pods-tiny"
CLAIM = "team-lake"
JOB_TIMEOUT = 600  # the RayJob from apply to its end (head start, worker join, the study)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local node needs root (namespaces, mounts, crun)")


def study_k8s(*args: str) -> list[dict]:
    """`study k8s ARGS` through the installed CLI: the manifests exactly as a user renders them."""
    out = subprocess.run([str(Path(sys.executable).parent / "study"), "k8s", *args], capture_output=True,
                         text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def status_fields(status: str) -> dict[str, str]:
    """The security-relevant lines of /proc/PID/status."""
    keys = ("Uid", "Gid", "Groups", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines()) if k in keys}


RESTRICTED = {
    "Uid": "1000\t1000\t1000\t1000",
    "Gid": "1000\t1000\t1000\t1000",
    "Groups": "1000",
    "CapPrm": "0000000000000000",
    "CapEff": "0000000000000000",
    "CapBnd": "0000000000000000",
    "CapAmb": "0000000000000000",
    "NoNewPrivs": "1",
    "Seccomp": "2",
}


def assert_restricted(kubelet, pod, report, main_process: bool = True):
    """The pod's restricted securityContext as each container sees it: an exec'd process at
    creation (every container) and the container's own process 1 (running ones)."""
    for c in [*pod.init, *pod.containers]:
        inside = status_fields(c.inside)
        assert inside == RESTRICTED, f"{pod.name}/{c.name}: {inside}"
        entry = {"exec at creation": inside}
        if main_process and c.running:
            main = kubelet.exec(pod, c.name, ["cat", "/proc/1/status"])
            assert main.returncode == 0, main.stderr
            entry["process 1"] = status_fields(main.stdout)
            assert entry["process 1"] == RESTRICTED, f"{pod.name}/{c.name} process 1: {entry['process 1']}"
            # RuntimeDefault's fingerprint: a syscall off its allow-list fails with ENOSYS (38)
            probe = "import ctypes; l=ctypes.CDLL(None, use_errno=True); l.syscall(248, b'user', b'k', b'v', 1, -2); print(ctypes.get_errno())"  # noqa: E501
            blocked = kubelet.exec(pod, c.name, ["python", "-c", probe])
            assert blocked.stdout.strip() == "38", f"add_key not blocked by seccomp: {blocked}"
        report.setdefault("security", {})[f"{pod.name}/{c.name}"] = entry


def test_the_rendered_pods_stage_data_run_a_study_on_head_and_worker_and_serve_the_app(tmp_path):
    started = time.time()
    image = build(ROOT / "k8s" / "Dockerfile", ROOT)  # the layers `make test-cluster` just built: found cached
    space = tmp_path / "pods-tiny.yaml"
    space.write_text(yaml.safe_dump({"study": {
        "name": STUDY,
        "base": {"model": "lenet_300_100", "dataset": "synthetic", "strategy": "imp", "rounds": 1, "seed": 0,
                 "train": {"lr": 1.0e-3, "iterations": 40, "eval_every": 20, "batch_size": 32},
                 "data": {"validation_size": 200, "synthetic_size": 600}},
        "search": {"prune.rates.fc": {"type": "float", "low": 0.1, "high": 0.5}},
        "budget": {"num_samples": 2},
        "max_concurrent": 2,
    }}))  # fmt: skip
    common = ["--image", IMAGE, "--existing-claim", CLAIM]
    objects = study_k8s("render", str(space), *common, "--profile", "cpu-dev", "--head-cpus", "1",
                        "--head-memory", "2Gi", "--worker-cpus", "2", "--worker-memory", "3Gi", "--max-workers", "1")  # fmt: skip
    rayjob = next(o for o in objects if o["kind"] == "RayJob")
    (deployment,) = [o for o in study_k8s("app", *common) if o["kind"] == "Deployment"]
    (stage,) = study_k8s("stage-data", "fashion_mnist", *common)
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    assumed = {(t["spec"]["securityContext"]["runAsUser"], t["spec"]["securityContext"]["runAsGroup"])
               for _, t in pod_templates([*objects, deployment, stage])}  # fmt: skip
    assert {(image.config.uid, image.config.gid)} == assumed, (
        f"k8s/Dockerfile's USER {image.config.user or 'root'} is not the user every pod runs as: {assumed}"
    )
    lake = tmp_path / "claims" / CLAIM  # the bound ReadWriteMany volume: a folder of this machine
    lake.mkdir(parents=True)
    rng = random.Random(31)
    report: dict = {"image": image.key, "layers": len(image.layers)}
    inspect = ["cat", "/proc/self/status"]
    with local_node(tmp_path / "node", {IMAGE: image}, {CLAIM: lake}, config_maps=config_maps,
                    skip=frozenset({"autoscaler"}), inspect=inspect) as kubelet:  # fmt: skip
        # the staging Job fills the data folder every pod's $STUDY_DATA_DIR points at
        staged = controllers.follow_job(kubelet, stage, controllers.start_job(kubelet, stage, rng), rng, timeout=300)
        assert staged.succeeded, (staged.reason, staged.pods[-1].log("stage"))
        assert_restricted(kubelet, staged.pods[0], report, main_process=False)
        files = sorted(p for p in (lake / "datasets").rglob("*") if p.is_file())
        assert files and all(p.stat().st_uid == 1000 for p in files), files
        report["staged"] = [str(p.relative_to(lake)) for p in files]

        # the RayJob: the operator's cluster, the submitter, the job to its end
        run = controllers.start_rayjob(kubelet, rayjob, rng)
        try:
            run = controllers.follow_rayjob(kubelet, rayjob, run, rng, timeout=JOB_TIMEOUT)
            report["rayjob"] = {
                "cluster": run.cluster["metadata"]["name"], "job_id": run.job_id, "dashboard": run.dashboard,
                "job_status": run.job_status, "deployment_status": run.deployment_status,
                "timeline_s": {k: v for k, v in run.timeline.items() if k != "applied"}, "reason": run.reason,
            }  # fmt: skip
            report["probes"] = {
                p.name: {c.name: {"first_ready_s": c.first_ready, "records": [(r.kind, r.at, r.ok) for r in p.probes
                                  if r.container == c.name][:12]} for c in p.containers}
                for p in [run.head, *run.workers]
            }  # fmt: skip
            logs = {c.name: run.head.log(c.name)[-3000:] for c in run.head.containers}
            submitter = run.submitter.pods[-1] if run.submitter and run.submitter.pods else None
            if submitter:
                logs["submitter"] = submitter.log(submitter.containers[0].name)[-3000:]
            assert run.job_status == "SUCCEEDED" and run.deployment_status == "Complete", (run.reason, logs)
            for pod in [run.head, *run.workers]:
                assert_restricted(kubelet, pod, report)
            assert submitter is not None
            assert_restricted(kubelet, submitter, report, main_process=False)
            # the ulimit line: the raylet runs with its soft limit raised to the node's hard limit
            limits = kubelet.exec(run.head, "ray-head", ["python", "-c", RAYLET_LIMITS])
            assert limits.returncode == 0, limits.stderr
            soft, hard = limits.stdout.split()
            report["raylet_open_files"] = {"soft": int(soft), "hard": int(hard)}
            assert soft == hard, f"KubeRay's ulimit line did not raise the raylet's soft limit: {soft} < {hard}"
            assert "cannot modify limit" not in run.head.log("ray-head"), run.head.log("ray-head")[:2000]
            listed = kubelet.exec(run.head, "ray-head", ["ray", "list", "nodes", "--format", "json"])
            assert listed.returncode == 0, listed.stderr
            node_ips = {n["node_id"]: n["node_ip"] for n in json.loads(listed.stdout)}
            assert sorted(node_ips.values()) == sorted(p.ip for p in [run.head, *run.workers]), node_ips
        finally:
            controllers.shutdown(kubelet, run)

        rows = [
            r for p in sorted((lake / "results" / "rounds").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()
        ]
        lineages = [r for p in sorted((lake / "results" / "lineages").rglob("*.parquet"))
                    for r in pq.read_table(p).to_pylist()]  # fmt: skip
        assert len(lineages) == 2 and {r["status"] for r in lineages} == {"finished"}, lineages
        assert {(r["trial_id"], r["round"]) for r in rows} == {(t["trial_id"], k) for t in lineages for k in (0, 1)}
        owners = {p.stat().st_uid for p in (lake / "results").rglob("*.parquet")}
        assert owners == {1000}, f"the lake's files must be written as uid 1000: {owners}"
        ran_on = {node_ips[r["node_id"]] for r in lineages}
        assert ran_on == {run.workers[0].ip}, f"the lineages ran on {ran_on}, not on the worker {run.workers[0].ip}"
        columns = ("trial_id", "strategy", "round", "remaining_pct", "prune_rate", "val_acc", "test_acc")
        report["rows"] = [{k: r[k] for k in columns} for r in rows]

        # the app: its readiness probe passes and it reads the lake (read-only) as uid 1000
        (app,) = controllers.deployment_pods(kubelet, deployment, rng)
        kubelet.wait(app, lambda p: p.ready, timeout=180, what="a passing readiness probe")
        report["probes"][app.name] = {"app": {"first_ready_s": app.containers[0].first_ready}}
        assert_restricted(kubelet, app, report)
        shown = kubelet.exec(app, "app", ["python", "-c", APP_PAGE], timeout=180)
        assert shown.returncode == 0 and STUDY in shown.stdout, (shown.stdout[-2000:], shown.stderr[-2000:])
        written = kubelet.exec(app, "app", ["touch", "/mnt/lake/results/x"])
        assert written.returncode != 0 and "Read-only file system" in written.stderr, written
        kubelet.delete(app)
    report["wall_s"] = round(time.time() - started)
    out = Path(os.environ.get("STUDY_CLUSTER_REPORT", ROOT / "results" / "cluster-report.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({k: report[k] for k in ("rayjob", "probes", "raylet_open_files", "rows")}, indent=1, default=str))


# Run inside the head container: the raylet's RLIMIT_NOFILE (no procps in the image).
RAYLET_LIMITS = r"""
import os, re
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\0')[0]
    except OSError:
        continue
    if cmd.endswith(b'/raylet'):
        line = next(l for l in open(f'/proc/{pid}/limits') if l.startswith('Max open files'))
        print(*line.split()[3:5])
        break
"""

# Run inside the app container: the app's own script on the lake, through Streamlit's AppTest.
APP_PAGE = r"""
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("app.py", default_timeout=150).run()
assert not at.exception, at.exception
for select in at.sidebar.multiselect:
    print(select.label, select.options)
"""
