"""One container's shim, what containerd-shim is to containerd, cut down: the kubelet starts it
under `unshare --mount`, and it

1. mounts the container's root filesystem: the image's layers under a writable layer of the
   container's own (overlayfs), in this private mount namespace, so it vanishes with the shim;
2. hides the unified cgroup hierarchy, which crun 1.8 refuses on a host with hybrid cgroups
   (crun runs with --cgroup-manager=disabled: no resource limits are enforced here);
3. creates the container (`crun create`: namespaces, mounts, user, capabilities, no_new_privs and
   seccomp set up; the process not started), then waits for the kubelet's "start" line on stdin,
   so the kubelet can look inside first;
4. starts it and, as the child subreaper its process is reparented to, waits for it and exits
   with its status (128 + signal when killed), after `crun delete`.

    unshare --mount --propagation private python -m study.deploy.local.shim \
        STATE_ROOT BUNDLE ID LOWERDIR UPPERDIR WORKDIR
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36
CGROUP2_UNIFIED = "/sys/fs/cgroup/unified"


def hide_unified_cgroup() -> None:
    """On a hybrid-cgroup host, cover the cgroup v2 mount (in this mount namespace only)."""
    if os.path.ismount(CGROUP2_UNIFIED):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", CGROUP2_UNIFIED], check=True)


def crun(root: str) -> list[str]:
    return ["crun", "--root", root, "--cgroup-manager=disabled"]


def exit_status(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(argv: list[str]) -> int:
    root, bundle, cid, lower, upper, work = argv
    rootfs = os.path.join(bundle, "rootfs")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, rootfs], check=True)
    hide_unified_cgroup()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    pid_file = os.path.join(bundle, "pid")
    created = subprocess.run(
        [*crun(root), "create", "--bundle", bundle, "--pid-file", pid_file, cid], stdin=subprocess.DEVNULL
    )
    if created.returncode != 0:
        print(f"shim: crun create {cid} failed (exit {created.returncode})", file=sys.stderr, flush=True)
        return 125
    try:
        command = sys.stdin.readline().strip()
        if command != "start":
            subprocess.run([*crun(root), "kill", cid, "KILL"], capture_output=True)
            return 137
        pid = int(open(pid_file).read())
        subprocess.run([*crun(root), "start", cid], check=True)
        while True:
            child, status = os.waitpid(-1, 0)
            if child == pid:
                return exit_status(status)
    finally:
        subprocess.run([*crun(root), "delete", "--force", cid], capture_output=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
