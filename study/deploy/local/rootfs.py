"""The image of `k8s/Dockerfile`, built without Docker: a stack of root-filesystem layers made by
following the Dockerfile's own instructions (`dockerfile.py`), cached between runs.

    python -m study.deploy.local.rootfs            # builds (or finds) the image, prints its layers

Like Docker's layer cache, each filesystem-changing instruction (FROM, RUN, COPY, WORKDIR) is one
layer keyed by its parent's key, the instruction, the image config in effect and, for COPY, the
content it copies; a layer whose key is in the cache is reused, so a code change rebuilds only
the code's layers. Layers are overlayfs upper directories under `$STUDY_IMAGE_CACHE`
(/var/cache/lottery-study by default, outside any clone). RUN executes in a chroot of the layers
mounted with overlayfs, in a mount and PID namespace of its own (nothing it mounts or starts
outlives it), as root with the image's ENV, exactly the Dockerfile's command; its checks
(`python -c "import ..."`) therefore run inside the image.

The differences from `docker build`, each forced by having no registry here:
- the base image: `FROM python:3.11-slim-bookworm` is Debian bookworm from `debootstrap
  --variant=minbase` with Debian's Python 3.11 in a virtual environment at /usr/local (so
  `python` and `pip` are /usr/local/bin's, as in the official image), not python.org's build;
- pip reads the host's pip configuration (`pip config list` of the Python running the build: the
  local wheel mirror, its CA bundle, its constraints) through read-only mounts under /mnt, which
  never enter a layer. torch==2.14.1 resolves there to the same CUDA build PyPI serves.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from study.deploy.local.dockerfile import BuildContext, ImageConfig, Instruction, Op, image_config, parse
from study.errors import SpecError

CACHE_ENV = "STUDY_IMAGE_CACHE"
DEFAULT_CACHE = Path("/var/cache/lottery-study")
KEEP_SECONDS = 3 * 24 * 3600  # a layer no build used for this long is removed after a build


class BuildError(RuntimeError):
    """A Dockerfile step failed: its line, and the end of its output."""


@dataclass(frozen=True)
class BaseImage:
    """How a FROM image is made here: a Debian suite from debootstrap plus a setup script."""

    suite: str
    packages: tuple[str, ...]
    setup: str  # runs as root in a chroot of the fresh filesystem
    config: ImageConfig
    mirror: str = "http://deb.debian.org/debian"


_PYTHON_SLIM_SETUP = r"""
set -eu
test "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = 3.11
python3 -m venv /usr/local
rm -f /etc/apt/sources.list
cat > /etc/apt/sources.list.d/debian.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
echo localhost > /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
"""

BASES = {
    "python:3.11-slim-bookworm": BaseImage(
        suite="bookworm",
        packages=("python3", "python3-venv", "ca-certificates", "netbase", "tzdata"),
        setup=_PYTHON_SLIM_SETUP,
        config=ImageConfig(
            env=(("PATH", "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"), ("LANG", "C.UTF-8")),
            cmd=("python3",),
        ),
    )
}

# One build step, run by `unshare --mount --pid --fork`: the layers mounted with overlayfs (or the
# base layer itself), then a COPY (tar, keeping existing folders' metadata), a WORKDIR (mkdir) or
# a RUN (chroot with /proc, a minimal /dev, the host's resolv.conf and the pip sources read-only
# under /mnt). Everything it mounts dies with its namespace.
STEP = r"""
set -eu
mode=$1 merged=$2 lower=$3 upper=$4 work=$5 binds=$6
shift 6
if [ -n "$lower" ]; then
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$merged"
else
  mount --bind "$upper" "$merged"
fi
case "$mode" in
  copy) tar -C "$1" -cf - . | tar -C "$merged" -xpf - --no-overwrite-dir; exit 0 ;;
  mkdir) mkdir -p "$merged$1"; exit 0 ;;
esac
mount -t proc proc "$merged/proc"
mount -t tmpfs -o mode=755,size=65536k tmpfs "$merged/dev"
for d in null zero full random urandom tty; do : > "$merged/dev/$d"; mount --bind "/dev/$d" "$merged/dev/$d"; done
ln -s /proc/self/fd "$merged/dev/fd"
mkdir "$merged/dev/pts" "$merged/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$merged/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$merged/mnt"
printf '%s\n' "$binds" | while IFS= read -r p; do
  [ -n "$p" ] || continue
  if [ -d "$p" ]; then mkdir -p "$merged/mnt/host$p"
  else mkdir -p "$(dirname "$merged/mnt/host$p")"; : > "$merged/mnt/host$p"; fi
  mount --bind -o ro "$p" "$merged/mnt/host$p"
done
if [ -e "$merged/etc/resolv.conf" ]; then mount --bind -o ro /etc/resolv.conf "$merged/etc/resolv.conf"; fi
exec chroot "$@"
"""

PIP_PATH_KEYS = {"cert", "client-cert", "constraint", "find-links", "index-url", "extra-index-url"}


def host_pip_env(python: str = sys.executable) -> tuple[dict[str, str], list[str]]:
    """The host pip's settings (config files and PIP_* variables, as `pip config list` shows
    them) as PIP_* variables for pip in the image, local paths moved under /mnt/host, and the
    host paths to mount there read-only (an index's parent folder: its links are relative)."""
    listed = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    settings: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        m = re.fullmatch(r"(global|install|:env:)\.([a-z-]+)='(.*)'", line.strip())
        if m:
            settings[m.group(2)] = m.group(3)
    env: dict[str, str] = {}
    binds: list[str] = []
    for key, value in settings.items():
        words = []
        for word in value.split():
            path = word.removeprefix("file://")
            if key in PIP_PATH_KEYS and path.startswith("/") and os.path.exists(path):
                bind = os.path.dirname(path.rstrip("/")) if key.endswith("index-url") else path
                binds.append(bind)
                word = word.replace(path, "/mnt/host" + path, 1)
            words.append(word)
        env["PIP_" + key.upper().replace("-", "_")] = " ".join(words)
    return env, sorted(set(binds))


@dataclass(frozen=True)
class Image:
    """The built image: its layers (bottom first) and the config a runtime starts from."""

    layers: tuple[Path, ...]
    config: ImageConfig
    key: str  # the top layer's key

    @property
    def lowerdir(self) -> str:
        """The layers as overlayfs's lowerdir option (top first)."""
        return ":".join(str(p) for p in reversed(self.layers))


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _files_digest(files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for rel, path in files:
        h.update(f"{rel}\0{path.lstat().st_mode:o}\0".encode())
        h.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    return h.hexdigest()[:24]


def _config_state(config: ImageConfig) -> str:
    return json.dumps([config.env, config.workdir, config.user])


def _log(message: str) -> None:
    print(f"rootfs: {message}", file=sys.stderr, flush=True)


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Builder:
    def __init__(self, cache: Path, context: BuildContext, pip_env: dict[str, str], pip_binds: list[str]):
        self.layers_dir = cache / "layers"
        self.context = context
        self.pip_env = pip_env
        self.pip_binds = pip_binds
        self.layers_dir.mkdir(parents=True, exist_ok=True)

    def layer(self, key: str, what: str, make) -> Path:
        """The layer `key`: from the cache, or made by `make(partial_dir)` and kept."""
        done = self.layers_dir / key
        if (done / "layer.json").is_file():
            os.utime(done / "layer.json")
            _log(f"{what}: cached ({key})")
            return done / "fs"
        partial = self.layers_dir / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        for sub in ("fs", "work", "merged"):
            (partial / sub).mkdir(parents=True)
        started = time.time()
        _log(f"{what}: building ({key})")
        try:
            make(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(partial / "work")
        (partial / "merged").rmdir()
        (partial / "layer.json").write_text(json.dumps({"instruction": what, "seconds": round(time.time() - started)}))
        partial.rename(done)
        _log(f"{what}: built in {time.time() - started:.0f} s")
        return done / "fs"

    def step(self, partial: Path, lowers: list[Path], mode: str, argv: list[str], what: str) -> None:
        lower = ":".join(str(p) for p in reversed(lowers))
        cmd = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", STEP, "step", mode]
        cmd += [str(partial / "merged"), lower, str(partial / "fs"), str(partial / "work"), "\n".join(self.pip_binds)]
        log = partial.parent / f"{partial.name.removesuffix('.partial')}.log"
        with open(log, "w") as out:
            rc = subprocess.run(
                [*cmd, *argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            ).returncode
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-25:]
            raise BuildError(f"{what} failed (exit {rc}); its output ends:\n" + "\n".join(tail))

    def run_argv(self, merged: Path, argv: tuple[str, ...], config: ImageConfig) -> list[str]:
        env = {"HOME": "/root", **config.env_dict(), **self.pip_env}
        user = [f"--userspec={config.uid}:{config.gid or 0}"] if config.uid else []
        return [*user, str(merged), "/usr/bin/env", "-i", f"--chdir={config.workdir}"] + [
            f"{k}={v}" for k, v in env.items()
        ] + list(argv)  # fmt: skip

    def base(self, ref: str, line: int) -> tuple[list[Path], BaseImage, str]:
        """The base image's two layers: the debootstrapped suite, then its setup script."""
        base = BASES.get(ref)
        if base is None:
            raise SpecError(
                f"Dockerfile line {line}: FROM {ref} has no recipe here; known bases: {', '.join(BASES)} "
                f"(add one to study/deploy/local/rootfs.py BASES)"
            )
        key = _digest("debootstrap", base.suite, ",".join(base.packages), base.mirror)

        def debootstrap(partial: Path) -> None:
            fs = partial / "fs"
            cmd = ["unshare", "--mount", "--pid", "--fork", "debootstrap", "--variant=minbase"]
            cmd += [f"--include={','.join(base.packages)}", base.suite, str(fs), base.mirror]
            log = partial.parent / f"{partial.name.removesuffix('.partial')}.log"
            with open(log, "w") as out:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            if rc != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                raise BuildError(f"FROM {ref}: debootstrap failed (exit {rc}); its output ends:\n{tail}")
            (fs / "etc" / "resolv.conf").write_text("")  # debootstrap copied the host's

        bottom = self.layer(key, f"FROM {ref} (debootstrap {base.suite})", debootstrap)
        key = _digest(key, "setup", base.setup, EXECUTOR)  # how steps run is part of every layer above

        def setup(partial: Path) -> None:
            argv = self.run_argv(partial / "merged", ("/bin/sh", "-c", base.setup), ImageConfig(env=base.config.env))
            self.step(partial, [bottom], "run", argv, f"FROM {ref} (setup)")

        return [bottom, self.layer(key, f"FROM {ref} (setup)", setup)], base, key


# What decides how a step runs (its mounts, chroot, environment and user): every layer's key holds it.
EXECUTOR = STEP + inspect.getsource(Builder.run_argv)


def build(dockerfile: Path, context_dir: Path, cache: Path | None = None) -> Image:
    """The image of `dockerfile` (its layers built or found in the cache); SpecError for a
    Dockerfile the builder cannot follow, BuildError for a step that fails."""
    if os.geteuid() != 0:
        raise SpecError("building the image's root filesystem needs root (debootstrap, mounts, chroot)")
    cache = cache or cache_dir()
    text = dockerfile.read_text()
    head = parse(text)  # checked before anything is built
    ref = head[0].args[0]
    base_config = BASES[ref].config if ref in BASES else ImageConfig()
    instructions = parse(text, base_config.env_dict())
    pip_env, pip_binds = host_pip_env()
    context = BuildContext.of(context_dir)
    with _locked(cache):
        builder = Builder(cache, context, pip_env, pip_binds)
        layers, base, key = builder.base(ref, instructions[0].line)
        config = base.config
        for n, ins in enumerate(instructions[1:], 2):
            what = f"[{n}/{len(instructions)}] {ins.text[:90]}"
            if ins.op in (Op.RUN, Op.COPY, Op.WORKDIR):
                key, fs = _apply(builder, ins, layers, config, key, what)
                layers.append(fs)
            config = image_config([ins], config)
        _prune(cache, {p.parent.name for p in layers})
    return Image(tuple(layers), config, key)


def _apply(
    builder: Builder, ins: Instruction, layers: list[Path], config: ImageConfig, parent: str, what: str
) -> tuple[str, Path]:
    state = _config_state(config)
    if ins.op is Op.WORKDIR:
        key = _digest(parent, ins.text, state)
        return key, builder.layer(
            key, what, lambda partial: builder.step(partial, layers, "mkdir", [ins.args[0]], what)
        )
    if ins.op is Op.RUN:
        key = _digest(parent, ins.text, state)
        return key, builder.layer(
            key,
            what,
            lambda partial: builder.step(
                partial, layers, "run", builder.run_argv(partial / "merged", ins.args, config), what
            ),
        )
    *sources, dest = ins.args
    if not dest.startswith("/"):
        dest = os.path.join(config.workdir, dest)
    copies = [(src, builder.context.files(src)) for src in sources]
    into_folder = dest.endswith("/") or len(sources) > 1 or any((builder.context.root / s).is_dir() for s in sources)
    key = _digest(parent, ins.text, state, *(_files_digest(files) for _, files in copies))

    def make(partial: Path) -> None:
        with tempfile.TemporaryDirectory(dir=builder.layers_dir) as staging:
            for src, files in copies:
                single = (builder.context.root / src).is_file()
                for rel, path in files:
                    name = os.path.basename(rel) if single else rel
                    target = Path(staging + (os.path.join(dest, name) if into_folder else dest))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target, follow_symlinks=False)
            for folder, dirs, _ in os.walk(staging):
                for d in dirs:
                    os.chmod(os.path.join(folder, d), 0o755)
            os.chmod(staging, 0o755)
            builder.step(partial, layers, "copy", [staging], what)

    return key, builder.layer(key, what, make)


def _prune(cache: Path, keep: set[str]) -> None:
    now = time.time()
    for entry in (cache / "layers").iterdir():
        name = entry.name.split(".")[0]
        stamp = entry / "layer.json"
        stale = entry.name.endswith(".partial") or (stamp.is_file() and now - stamp.stat().st_mtime > KEEP_SECONDS)
        if entry.is_dir() and name not in keep and stale:
            shutil.rmtree(entry, ignore_errors=True)
            (cache / "layers" / f"{name}.log").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="build k8s/Dockerfile's image as cached root-filesystem layers")
    parser.add_argument("--dockerfile", default="k8s/Dockerfile")
    parser.add_argument("--context", default=".")
    args = parser.parse_args(argv)
    started = time.time()
    try:
        image = build(Path(args.dockerfile), Path(args.context))
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _log(f"image {image.key}: {len(image.layers)} layers, user {image.config.user or 'root'}, "
         f"workdir {image.config.workdir}, {time.time() - started:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
