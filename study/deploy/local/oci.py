"""A pod's container as an OCI runtime config (crun's config.json), built the way a CRI runtime
builds it from the pod spec: the process (command/args over the image's entrypoint/cmd, the
image's environment under the container's, `$(VAR)` references expanded, the working
directory), its identity and confinement from the pod's and the container's securityContext
(user and groups, capabilities, no_new_privs, the RuntimeDefault seccomp profile; runAsNonRoot
verified), the default mounts of a container plus the pod's /etc/hosts, /etc/resolv.conf and
volumes, and the pod's network namespace.

RuntimeDefault is the profile Debian's containers-common ships (/usr/share/containers/seccomp.json),
which CRI-O uses as its RuntimeDefault; containerd's (Docker's) is stricter about unshare and
mount. Rules that need a capability the container lacks are left out, as the runtimes do."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.deploy.local.dockerfile import ImageConfig
from study.errors import SpecError

SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")
# containerd's and CRI-O's default capability set (a container starts with these unless dropped)
DEFAULT_CAPS = frozenset(
    "CAP_" + c
    for c in (
        "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE "
        "SYS_CHROOT KILL AUDIT_WRITE"
    ).split()
)
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
SOFT_NOFILE = 1024  # systemd's default soft limit, which containerd 2 and CRI-O pass on to containers


class ContainerConfigError(SpecError):
    """What the kubelet reports as CreateContainerConfigError: the container is never started."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    caps: frozenset[str]
    no_new_privileges: bool
    seccomp: str  # "RuntimeDefault" or "Unconfined"


@dataclass(frozen=True)
class ImageUsers:
    """The image's /etc/passwd and /etc/group, for a uid's primary group and group memberships."""

    passwd: str = ""
    group: str = ""

    def primary_gid(self, uid: int) -> int | None:
        for line in self.passwd.splitlines():
            parts = line.split(":")
            if len(parts) > 3 and parts[2] == str(uid):
                return int(parts[3])
        return None

    def member_gids(self, uid: int) -> tuple[int, ...]:
        names = {
            p[0] for p in (line.split(":") for line in self.passwd.splitlines()) if len(p) > 2 and p[2] == str(uid)
        }
        out = []
        for line in self.group.splitlines():
            parts = line.split(":")
            if len(parts) > 3 and names & set(parts[3].split(",")):
                out.append(int(parts[2]))
        return tuple(out)


def identity(pod_sc: dict[str, Any], container_sc: dict[str, Any], image: ImageConfig, users: ImageUsers) -> Identity:
    """The process identity a CRI runtime gives the container; raises ContainerConfigError where
    the kubelet refuses to start it (runAsNonRoot with a root user)."""
    merged = {**pod_sc, **container_sc}
    if container_sc.get("privileged"):
        raise ContainerConfigError("privileged containers are not run here (the restricted profile forbids them)")
    uid = merged.get("runAsUser", image.uid)
    if merged.get("runAsNonRoot") and uid == 0:
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    gid = merged.get("runAsGroup")
    if gid is None:
        gid = image.gid if image.gid is not None and "runAsUser" not in merged else users.primary_gid(uid) or 0
    groups = [*users.member_gids(uid), *pod_sc.get("supplementalGroups", [])]
    if "fsGroup" in pod_sc:
        groups.append(pod_sc["fsGroup"])
    caps = container_sc.get("capabilities", {})
    dropped = {("CAP_" + c).upper().replace("CAP_CAP_", "CAP_") for c in caps.get("drop", [])}
    added = {("CAP_" + c).upper().replace("CAP_CAP_", "CAP_") for c in caps.get("add", [])}
    effective = set() if "CAP_ALL" in dropped else set(DEFAULT_CAPS) - dropped
    effective |= added
    profile = merged.get("seccompProfile", {}).get("type", "Unconfined")
    if profile not in ("RuntimeDefault", "Unconfined"):
        raise ContainerConfigError(f"seccompProfile {profile} is not supported here (RuntimeDefault or Unconfined)")
    return Identity(
        uid,
        gid,
        tuple(sorted(set(groups))),
        frozenset(effective),
        container_sc.get("allowPrivilegeEscalation") is False,
        profile,
    )


_ARCHES = {"x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64")}


def runtime_default_seccomp(caps: frozenset[str], profile: Path = SECCOMP_PROFILE) -> dict[str, Any]:
    """The RuntimeDefault profile in OCI form: the rules for this architecture whose capability
    conditions the container's (bounding) capabilities meet."""
    source = json.loads(profile.read_text())
    scmp_arch, go_arch = _ARCHES[platform.machine()]
    arches = [
        a for m in source["archMap"] if m["architecture"] == scmp_arch for a in [scmp_arch, *m["subArchitectures"]]
    ]
    kernel = tuple(int(x) for x in re.findall(r"\d+", platform.release())[:2])
    syscalls = []
    for rule in source["syscalls"]:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and go_arch not in inc["arches"] or go_arch in exc.get("arches", []):
            continue
        if not set(inc.get("caps", [])) <= caps or set(exc.get("caps", [])) & caps:
            continue
        if inc.get("minKernel") and kernel < tuple(int(x) for x in inc["minKernel"].split(".")[:2]):
            continue
        out: dict[str, Any] = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)
    config: dict[str, Any] = {"defaultAction": source["defaultAction"], "architectures": arches, "syscalls": syscalls}
    if source.get("defaultErrnoRet") is not None:
        config["defaultErrnoRet"] = source["defaultErrnoRet"]
    return config


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_refs(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable's value, an undefined one left as written,
    $$ an escaped $."""
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


@dataclass
class Mount:
    destination: str
    source: str
    type: str = "bind"
    options: list[str] = field(default_factory=lambda: ["rbind", "rw"])

    def oci(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": self.type, "source": self.source, "options": self.options}


def default_mounts() -> list[Mount]:
    return [
        Mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        Mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        Mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        Mount("/dev/shm", "shm", "tmpfs", ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]),
    ]


def declared_env(resolved: list[tuple[str, str]]) -> dict[str, str]:
    """The pod spec's variables in order, each value's $(VAR) references resolved against the
    ones before it (Kubernetes never reads the image's environment for them)."""
    declared: dict[str, str] = {}
    for name, value in resolved:
        declared[name] = expand_refs(value, declared)
    return declared


def process_env(image: ImageConfig, declared: dict[str, str], hostname: str) -> dict[str, str]:
    """The container's environment: HOSTNAME, the image's, then the pod spec's."""
    return {"HOSTNAME": hostname, **image.env_dict(), **declared}


def argv(container: dict[str, Any], image: ImageConfig, declared: dict[str, str]) -> list[str]:
    """command/args over the image's ENTRYPOINT/CMD, as Kubernetes combines them, $(VAR)
    references to the pod spec's variables expanded."""
    command = container.get("command")
    args = container.get("args")
    if command:
        words = [*command, *(args or [])]
    else:
        words = [*image.entrypoint, *(args if args is not None else image.cmd)]
    if not words:
        raise ContainerConfigError(f"container {container['name']}: no command and the image sets none")
    return [expand_refs(w, declared) for w in words]


def node_nofile() -> tuple[int, int]:
    """RLIMIT_NOFILE as a node's runtime hands it on: systemd's soft 1024, the node's hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(SOFT_NOFILE, hard), hard


def runtime_config(
    args: list[str],
    env: dict[str, str],
    cwd: str,
    who: Identity,
    rootfs: str,
    hostname: str,
    mounts: list[Mount],
    netns: str,
) -> dict[str, Any]:
    caps = sorted(who.caps)
    soft, hard = node_nofile()
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": who.uid, "gid": who.gid, "additionalGids": list(who.groups)},
        "args": args,
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps if who.uid == 0 else [],
            "permitted": caps if who.uid == 0 else [],
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}],
        "noNewPrivileges": who.no_new_privileges,
    }
    linux: dict[str, Any] = {
        "namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": netns},
        ],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    }  # fmt: skip
    if who.seccomp == "RuntimeDefault":
        linux["seccomp"] = runtime_default_seccomp(who.caps)
    by_destination = {m.destination: m for m in mounts}  # a volume at /dev/shm replaces the default one
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": [m.oci() for m in by_destination.values()],
        "linux": linux,
    }


def write_bundle(bundle: Path, config: dict[str, Any]) -> None:
    (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    os.chmod(bundle, 0o711)
