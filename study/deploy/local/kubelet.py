"""The kubelet of a one-node cluster on this machine: it runs a pod manifest as Kubernetes would,
each container an OCI container started with crun (through `shim.py`), under the pod's
securityContext, with the pod's environment, volumes and network namespace.

What it does for a pod: a network namespace on the node's bridge (`network.py`) with the pod's
/etc/hosts, /etc/hostname and /etc/resolv.conf; its volumes (emptyDir, emptyDir in memory,
persistentVolumeClaim bound to a folder of this machine, configMap), owned by the pod's
fsGroup; its init containers one after another, each to a zero exit; then its containers, each
with its own writable layer over the image's; their readiness and liveness probes (httpGet,
tcpSocket, exec) on the spec's schedule; restarts per restartPolicy; deletion with SIGTERM, a
grace period, then SIGKILL. A container the kubelet would refuse (runAsNonRoot with a root user,
an image not on the node, a Secret that does not exist) fails the pod with the kubelet's reason.

Resource limits are not enforced (crun runs without a cgroup manager on this hybrid-cgroup host)
and there is no API server: pods are given to `Kubelet.run` directly."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from study.deploy.local import oci
from study.deploy.local.kuberay import quantity_value
from study.deploy.local.network import NodeNetwork
from study.deploy.local.rootfs import Image
from study.errors import SpecError

REGISTRY = Path("/run/lottery-study")  # one file per live run: what a later run sweeps if this one is killed
HIDE_CGROUP = 'if mountpoint -q /sys/fs/cgroup/unified; then mount -t tmpfs -o size=4k tmpfs /sys/fs/cgroup/unified; fi; exec "$@"'


class Phase(Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass
class ProbeRecord:
    kind: str  # readiness / liveness
    container: str
    at: float  # seconds since the container started
    ok: bool


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool
    log: Path
    cid: str = ""
    process: dict[str, Any] = field(default_factory=dict)  # its OCI process (what an exec starts from)
    shim: subprocess.Popen | None = None
    started: float | None = None
    exit_code: int | None = None
    restarts: int = 0
    ready: bool = False
    first_ready: float | None = None  # seconds from start to the first passing readiness probe
    inside: str = ""  # /proc/self/status of a process exec'd into it at creation
    failures: dict[str, int] = field(default_factory=dict)
    next_probe: dict[str, float] = field(default_factory=dict)
    next_start: float = 0.0

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.shim is not None and self.exit_code is None


@dataclass
class Pod:
    manifest: dict[str, Any]
    dir: Path
    ip: str = ""
    netns: str = ""
    phase: Phase = Phase.PENDING
    reason: str = ""
    init: list[Container] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    probes: list[ProbeRecord] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.manifest["metadata"].get("namespace", "default")

    @property
    def ready(self) -> bool:
        return self.phase is Phase.RUNNING and all(c.ready for c in self.containers)

    def container(self, name: str) -> Container:
        return next(c for c in [*self.init, *self.containers] if c.name == name)

    def log(self, name: str) -> str:
        path = self.container(name).log
        return path.read_text(errors="replace") if path.exists() else ""


def crun(root: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    """crun with the node's flags, in a mount namespace that hides the unified cgroup mount."""
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_CGROUP, "sh"]
    return subprocess.run([*cmd, "crun", "--root", str(root), "--cgroup-manager=disabled", *args], **kw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_runs() -> None:
    """Removes what a run that was killed left behind: its containers and network namespaces."""
    if not REGISTRY.is_dir():
        return
    for entry in REGISTRY.glob("*.json"):
        info = json.loads(entry.read_text())
        if _alive(info["pid"]):
            continue
        root = Path(info["crun_root"])
        if root.is_dir():
            for cid in (p.name for p in root.iterdir() if p.is_dir()):
                crun(root, "kill", cid, "KILL", capture_output=True)
                crun(root, "delete", "--force", cid, capture_output=True)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        for ns in listed:
            if ns.startswith(info["prefix"] + "-"):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        entry.unlink(missing_ok=True)


def image_users(image: Image) -> oci.ImageUsers:
    def top(path: str) -> str:
        for layer in reversed(image.layers):
            if (layer / path).is_file():
                return (layer / path).read_text()
        return ""

    return oci.ImageUsers(top("etc/passwd"), top("etc/group"))


class Kubelet:
    def __init__(
        self,
        workdir: Path,
        network: NodeNetwork,
        images: dict[str, Image],
        claims: dict[str, Path],
        config_maps: dict[str, dict[str, str]] | None = None,
        secrets: dict[str, dict[str, str]] | None = None,
        skip: frozenset[str] = frozenset(),
        inspect: list[str] | None = None,
    ):
        self.workdir = workdir
        self.network = network
        self.images = images
        self.claims = claims
        self.config_maps = config_maps or {}
        self.secrets = secrets or {}
        self.skip = skip  # container names not run here (the autoscaler needs an API server)
        self.inspect = inspect  # argv exec'd into every container at creation (kept as Container.inside)
        self.crun_root = workdir / "crun"
        self.crun_root.mkdir(parents=True, exist_ok=True)
        self.pods: list[Pod] = []
        self._ids = 0
        self._lock = threading.Lock()

    # --- pods ---------------------------------------------------------------------------------

    def run(self, manifest: dict[str, Any]) -> Pod:
        """Starts a pod (returns at once; its init containers, containers and probes run in a
        thread of the pod's own)."""
        manifest = copy.deepcopy(manifest)
        pod = Pod(manifest, self.workdir / "pods" / manifest["metadata"]["name"])
        pod.dir.mkdir(parents=True)
        spec = manifest["spec"]
        pod.init = [Container(c, True, pod.dir / f"{c['name']}.log") for c in spec.get("initContainers", [])]
        pod.containers = [
            Container(c, False, pod.dir / f"{c['name']}.log") for c in spec["containers"] if c["name"] not in self.skip
        ]
        self.pods.append(pod)
        pod.thread = threading.Thread(target=self._pod_worker, args=(pod,), name=f"pod-{pod.name}", daemon=True)
        pod.thread.start()
        return pod

    def wait(self, pod: Pod, until: Callable[[Pod], bool], timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while not until(pod):
            if pod.phase is Phase.FAILED and not until(pod):
                raise RuntimeError(f"pod {pod.name} failed ({pod.reason}) while waiting for {what}")
            if time.time() > deadline:
                raise TimeoutError(
                    f"pod {pod.name}: still waiting for {what} after {timeout:.0f} s ({pod.phase.value})"
                )
            time.sleep(0.2)

    def delete(self, pod: Pod, grace: float = 10.0) -> None:
        """SIGTERM to every running container, SIGKILL after `grace` seconds, then the sandbox."""
        pod.stop.set()
        if pod.thread is not None:
            pod.thread.join(30)
        running = [c for c in [*pod.init, *pod.containers] if c.running]
        for c in running:
            crun(self.crun_root, "kill", c.cid, "TERM", capture_output=True)
        deadline = time.time() + grace
        for c in running:
            assert c.shim is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.shim.wait(max(0.1, deadline - time.time()))
            if c.shim.poll() is None:
                crun(self.crun_root, "kill", c.cid, "KILL", capture_output=True)
                try:
                    c.shim.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(c.shim.pid, signal.SIGKILL)
                    c.shim.wait()
            c.exit_code = c.shim.returncode
        self.network.remove_pod(pod.name)
        for name in self.network.records.copy():
            if self.network.records[name] == pod.ip and pod.ip:
                del self.network.records[name]
        with contextlib.suppress(ValueError):
            self.pods.remove(pod)

    def close(self) -> None:
        for pod in list(self.pods):
            with contextlib.suppress(Exception):
                self.delete(pod, grace=2)
        for cid in (p.name for p in self.crun_root.iterdir() if p.is_dir()):
            crun(self.crun_root, "kill", cid, "KILL", capture_output=True)
            crun(self.crun_root, "delete", "--force", cid, capture_output=True)

    def exec(self, pod: Pod, container: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """`kubectl exec`: a process in the container with the container's own process settings."""
        c = pod.container(container)
        spec = pod.dir / f"exec-{c.cid}-{time.monotonic_ns()}.json"
        spec.write_text(json.dumps({**c.process, "args": argv, "terminal": False}))
        try:
            return crun(self.crun_root, "exec", "--process", str(spec), c.cid, capture_output=True, text=True,
                        timeout=timeout)  # fmt: skip
        finally:
            spec.unlink(missing_ok=True)

    # --- the pod's thread -------------------------------------------------------------------

    def _pod_worker(self, pod: Pod) -> None:
        try:
            self._sandbox(pod)
            for c in pod.init:
                while not pod.stop.is_set():
                    self._start(pod, c)
                    assert c.shim is not None
                    while c.shim.poll() is None and not pod.stop.is_set():
                        time.sleep(0.2)
                    if pod.stop.is_set():
                        return
                    c.exit_code = c.shim.returncode
                    if c.exit_code == 0:
                        break
                    if pod.manifest["spec"].get("restartPolicy", "Always") == "Never":
                        raise PodFailure(f"init container {c.name} exited {c.exit_code}")
                    c.restarts += 1
                    time.sleep(min(300, 10 * 2 ** (c.restarts - 1)))
            for c in pod.containers:
                self._start(pod, c)
            pod.phase = Phase.RUNNING
            while not pod.stop.is_set():
                self._tick(pod)
                time.sleep(0.2)
        except PodFailure as e:
            pod.reason = str(e)
            pod.phase = Phase.FAILED
        except Exception as e:  # a bug or a runtime failure: the pod fails with it, the test reads why
            pod.reason = f"{type(e).__name__}: {e}"
            pod.phase = Phase.FAILED

    def _tick(self, pod: Pod) -> None:
        policy = pod.manifest["spec"].get("restartPolicy", "Always")
        now = time.time()
        for c in pod.containers:
            if c.shim is not None and c.exit_code is None and c.shim.poll() is not None:
                c.exit_code, c.ready = c.shim.returncode, False
                restart = policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)
                if restart:
                    c.restarts += 1
                    c.next_start = now + min(300, 10 * 2 ** (c.restarts - 1))  # CrashLoopBackOff
            if c.exit_code is not None and c.next_start and now >= c.next_start:
                c.next_start = 0.0
                self._start(pod, c)
            if c.running:
                self._probe(pod, c, now)
        if all(c.exit_code is not None and not c.next_start for c in pod.containers):
            failed = [c for c in pod.containers if c.exit_code != 0]
            pod.phase = Phase.FAILED if failed else Phase.SUCCEEDED
            pod.reason = ", ".join(f"{c.name} exited {c.exit_code}" for c in failed)
            pod.stop.set()

    def _probe(self, pod: Pod, c: Container, now: float) -> None:
        assert c.started is not None
        for kind in ("readiness", "liveness"):
            probe = c.spec.get(f"{kind}Probe")
            if probe is None:
                if kind == "readiness" and not c.ready:
                    c.ready, c.first_ready = True, now - c.started
                continue
            due = c.next_probe.get(kind, c.started + probe.get("initialDelaySeconds", 0))
            if now < due:
                continue
            c.next_probe[kind] = now + probe.get("periodSeconds", 10)
            ok = self._check(pod, c, probe)
            pod.probes.append(ProbeRecord(kind, c.name, round(now - c.started, 1), ok))
            threshold = probe.get("failureThreshold", 3)
            c.failures[kind] = 0 if ok else c.failures.get(kind, 0) + 1
            if kind == "readiness":
                if ok and not c.ready:
                    c.ready = True
                    c.first_ready = c.first_ready or round(now - c.started, 1)
                elif not ok and c.failures[kind] >= threshold:
                    c.ready = False
            elif not ok and c.failures[kind] >= threshold:
                crun(self.crun_root, "kill", c.cid, "KILL", capture_output=True)  # the kubelet restarts it

    def _check(self, pod: Pod, c: Container, probe: dict[str, Any]) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            url = f"http://{get.get('host', pod.ip)}:{self._port(c, get['port'])}{get.get('path', '/')}"

            def http() -> bool:
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as response:
                        return 200 <= response.status < 400
                except Exception:
                    return False

            return self.network.call(http)
        if "tcpSocket" in probe:
            port = self._port(c, probe["tcpSocket"]["port"])

            def tcp() -> bool:
                try:
                    socket.create_connection((pod.ip, port), timeout=timeout).close()
                    return True
                except OSError:
                    return False

            return self.network.call(tcp)
        if "exec" in probe:
            try:
                return self.exec(pod, c.name, probe["exec"]["command"], timeout=timeout).returncode == 0
            except subprocess.TimeoutExpired:
                return False
        raise SpecError(f"container {c.name}: a probe without httpGet, tcpSocket or exec")

    @staticmethod
    def _port(c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        named = [p["containerPort"] for p in c.spec.get("ports", []) if p.get("name") == port]
        if not named:
            raise SpecError(f"container {c.name}: no port named {port}")
        return int(named[0])

    # --- the sandbox and one container ----------------------------------------------------------

    def _sandbox(self, pod: Pod) -> None:
        pod.netns, pod.ip = self.network.add_pod(pod.name)
        hostname = pod.manifest["spec"].get("hostname", pod.name)[:63]
        (pod.dir / "hostname").write_text(hostname + "\n")
        (pod.dir / "hosts").write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"fe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{pod.ip}\t{hostname}\n"
        )
        (pod.dir / "resolv.conf").write_text(self.network.resolv_conf(pod.namespace))
        for f in ("hostname", "hosts", "resolv.conf"):
            os.chmod(pod.dir / f, 0o644)
        os.chmod(pod.dir, 0o755)

    def _volume(self, pod: Pod, name: str) -> tuple[dict[str, Any], Path | None]:
        """The pod's volume `name` and its folder on this machine (None for memory)."""
        spec = pod.manifest["spec"]
        volume = next((v for v in spec.get("volumes", []) if v["name"] == name), None)
        if volume is None:
            raise PodFailure(f"volumeMount {name}: the pod has no such volume")
        fs_group = spec.get("securityContext", {}).get("fsGroup")
        folder = pod.dir / "volumes" / name
        if "emptyDir" in volume:
            if volume["emptyDir"].get("medium") == "Memory":
                return volume, None
            if not folder.exists():
                folder.mkdir(parents=True)
                _own(folder, fs_group, 0o777)
            return volume, folder
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in self.claims:
                raise PodFailure(f"persistentVolumeClaim {claim} is not bound (no such claim on this node)")
            folder = self.claims[claim]
            if fs_group is not None:  # as a CSI driver that supports fsGroup: the volume's group is the pod's
                for path in [folder, *folder.rglob("*")]:
                    _own(path, fs_group)
            return volume, folder
        if "configMap" in volume:
            source = volume["configMap"]["name"]
            if source not in self.config_maps:
                raise PodFailure(f"configMap {source} not found")
            if not folder.exists():
                folder.mkdir(parents=True)
                for key, text in self.config_maps[source].items():
                    (folder / key).write_text(text)
                    os.chmod(folder / key, volume["configMap"].get("defaultMode", 0o644))
                    _own(folder / key, fs_group)
                os.chmod(folder, 0o755)
            return volume, folder
        raise PodFailure(f"volume {name}: only emptyDir, persistentVolumeClaim and configMap volumes run here")

    def _mounts(self, pod: Pod, c: Container) -> list[oci.Mount]:
        mounts = oci.default_mounts()
        for f in ("hosts", "hostname", "resolv.conf"):
            mounts.append(oci.Mount(f"/etc/{f}", str(pod.dir / f)))
        for m in c.spec.get("volumeMounts", []):
            if m.get("subPath") or m.get("mountPropagation"):
                raise PodFailure(f"volumeMount {m['name']}: subPath and mountPropagation are not supported here")
            volume, folder = self._volume(pod, m["name"])
            if folder is None:  # emptyDir in memory: a tmpfs of its sizeLimit
                size = volume["emptyDir"].get("sizeLimit")
                options = ["nosuid", "nodev", "mode=1777", *([f"size={quantity_value(size)}"] if size else [])]
                mounts.append(oci.Mount(m["mountPath"], "tmpfs", "tmpfs", options))
                continue
            read_only = m.get("readOnly") or volume.get("persistentVolumeClaim", {}).get("readOnly")
            read_only = read_only or "configMap" in volume
            mounts.append(oci.Mount(m["mountPath"], str(folder), "bind", ["rbind", "ro" if read_only else "rw"]))
        return mounts

    def _env(self, pod: Pod, c: Container) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for source in c.spec.get("envFrom", []):
            if "configMapRef" in source:
                data = self.config_maps.get(source["configMapRef"]["name"])
            else:
                data = self.secrets.get(source.get("secretRef", {}).get("name", ""))
            if data is None:
                raise PodFailure(f"CreateContainerConfigError: envFrom {source} not found")
            out += [(source.get("prefix", "") + k, v) for k, v in data.items()]
        for e in c.spec.get("env", []):
            if "valueFrom" not in e:
                out.append((e["name"], str(e.get("value", ""))))
                continue
            ref = e["valueFrom"]
            if "fieldRef" in ref:
                out.append((e["name"], self._field(pod, ref["fieldRef"]["fieldPath"])))
            elif "secretKeyRef" in ref or "configMapKeyRef" in ref:
                kind, store = ("secretKeyRef", self.secrets) if "secretKeyRef" in ref else (
                    "configMapKeyRef", self.config_maps)  # fmt: skip
                key = ref[kind]
                value = store.get(key["name"], {}).get(key["key"])
                if value is None:
                    raise PodFailure(f"CreateContainerConfigError: {kind} {key['name']}/{key['key']} not found")
                out.append((e["name"], value))
            else:
                raise PodFailure(f"env {e['name']}: {next(iter(ref))} is not supported here")
        return out

    def _field(self, pod: Pod, path: str) -> str:
        meta = pod.manifest["metadata"]
        if path == "metadata.name":
            return pod.name
        if path == "metadata.namespace":
            return pod.namespace
        if path == "status.podIP":
            return pod.ip
        for key in ("labels", "annotations"):
            prefix = f"metadata.{key}['"
            if path.startswith(prefix):
                return meta.get(key, {}).get(path[len(prefix) : -2], "")
        raise PodFailure(f"fieldRef {path} is not supported here")

    def _start(self, pod: Pod, c: Container) -> None:
        spec = c.spec
        image = self.images.get(spec["image"])
        if image is None:
            raise PodFailure(f"ErrImagePull: image {spec['image']} is not on this node (it has {sorted(self.images)})")
        with self._lock:
            self._ids += 1
            c.cid = f"{pod.name[:40]}-{c.name[:15]}-{self._ids}"
        home = pod.dir / "containers" / c.cid
        for sub in ("upper", "work"):
            (home / sub).mkdir(parents=True)
        bundle = home / "bundle"
        try:
            who = oci.identity(
                pod.manifest["spec"].get("securityContext", {}), spec.get("securityContext", {}), image.config,
                image_users(image),
            )  # fmt: skip
            hostname = (pod.dir / "hostname").read_text().strip()
            declared = oci.declared_env(self._env(pod, c))
            env = oci.process_env(image.config, declared, hostname)
            args = oci.argv(spec, image.config, declared)
        except oci.ContainerConfigError as e:
            raise PodFailure(f"CreateContainerConfigError: container {c.name}: {e}") from None
        cwd = spec.get("workingDir") or image.config.workdir
        config = oci.runtime_config(args, env, cwd, who, str(bundle / "rootfs"), hostname, self._mounts(pod, c),
                                    pod.netns)  # fmt: skip
        oci.write_bundle(bundle, config)
        c.process = config["process"]
        log = open(c.log, "a")
        shim = [sys.executable, "-m", "study.deploy.local.shim", str(self.crun_root), str(bundle), c.cid]
        shim += [image.lowerdir, str(home / "upper"), str(home / "work")]
        c.exit_code, c.ready, c.next_probe, c.failures = None, False, {}, {}
        c.shim = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", *shim],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.time() + 60
        while not (bundle / "pid").exists():
            if c.shim.poll() is not None or time.time() > deadline:
                raise PodFailure(f"container {c.name} could not be created: {c.log.read_text()[-2000:]}")
            time.sleep(0.05)
        if self.inspect:
            looked = self.exec(pod, c.name, self.inspect)
            c.inside = looked.stdout if looked.returncode == 0 else f"exec failed: {looked.stderr}"
        assert c.shim.stdin is not None
        c.shim.stdin.write("start\n")
        c.shim.stdin.close()
        c.started = time.time()


class PodFailure(RuntimeError):
    """Why the kubelet failed a pod (its reason, as `kubectl describe` would show it)."""


def _own(path: Path, group: int | None, mode: int | None = None) -> None:
    """A volume's file under the pod's fsGroup: that group, group-writable, setgid on folders."""
    if mode is not None:
        os.chmod(path, mode)
    if group is None:
        return
    os.chown(path, -1, group, follow_symlinks=False)
    if not path.is_symlink():
        st = path.stat().st_mode
        os.chmod(path, st | 0o060 | (0o2000 if path.is_dir() else 0))


@contextlib.contextmanager
def local_node(workdir: Path, images: dict[str, Image], claims: dict[str, Path], **kw: Any) -> Iterator[Kubelet]:
    """The node: its network and its kubelet, registered so that a later run sweeps them if this
    run is killed, and removed on the way out whatever happened."""
    sweep_stale_runs()
    REGISTRY.mkdir(parents=True, exist_ok=True)
    prefix = f"lsc{os.getpid()}"
    entry = REGISTRY / f"{prefix}.json"
    entry.write_text(json.dumps({"pid": os.getpid(), "prefix": prefix, "crun_root": str(workdir / "crun")}))
    try:
        with NodeNetwork(prefix) as network:
            kubelet = Kubelet(workdir, network, images, claims, **kw)
            try:
                yield kubelet
            finally:
                kubelet.close()
    finally:
        entry.unlink(missing_ok=True)
        shutil.rmtree(workdir / "crun", ignore_errors=True)
