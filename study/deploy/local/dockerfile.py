"""A Dockerfile read as a list of typed instructions: what `rootfs.py` builds an image from, so the
image built without Docker follows `k8s/Dockerfile` itself and cannot drift from it.

Only what the project's Dockerfile uses is accepted (one FROM, RUN, COPY without flags, ENV,
WORKDIR, a numeric USER, and the metadata LABEL/EXPOSE/CMD/ENTRYPOINT); anything else is a
one-line error naming the line, rather than an image built differently from the real one."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from study.errors import SpecError


class Op(Enum):
    FROM = "FROM"
    RUN = "RUN"
    COPY = "COPY"
    ENV = "ENV"
    WORKDIR = "WORKDIR"
    USER = "USER"
    LABEL = "LABEL"
    EXPOSE = "EXPOSE"
    CMD = "CMD"
    ENTRYPOINT = "ENTRYPOINT"


METADATA = {Op.LABEL, Op.EXPOSE}  # recorded by Docker, no effect on the root filesystem or the process


@dataclass(frozen=True)
class Instruction:
    op: Op
    text: str  # the instruction as written, continuation lines joined (the layer cache keys on it)
    line: int  # where it starts in the Dockerfile (1-based)
    args: tuple[str, ...] = ()  # RUN: the argv (shell form: /bin/sh -c TEXT); COPY: sources then destination
    env: tuple[tuple[str, str], ...] = ()  # ENV: the pairs it sets


@dataclass(frozen=True)
class ImageConfig:
    """What the image records besides its files: the process defaults a runtime starts from."""

    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/"
    user: str = ""  # "" = root; else "uid" or "uid:gid"
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = field(default=())

    @property
    def uid(self) -> int:
        return int(self.user.split(":")[0]) if self.user else 0

    @property
    def gid(self) -> int | None:
        """The image's group, when USER names one (else the user's group from /etc/passwd)."""
        return int(self.user.split(":")[1]) if ":" in self.user else None

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with continuation lines joined and comments dropped, as
    Docker reads them (a comment line inside a continuation is skipped)."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        raise SpecError(f"Dockerfile line {start}: the last instruction ends with a line continuation")
    return out


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(value: str, env: dict[str, str]) -> str:
    """Docker's variable substitution in ENV, WORKDIR, COPY and USER: $VAR and ${VAR}."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _exec_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def parse(text: str, base_env: dict[str, str] | None = None) -> list[Instruction]:
    """The instructions of a single-stage Dockerfile, checked; ENV values expanded as Docker does."""
    env = dict(base_env or {})
    out: list[Instruction] = []
    for line, logical in logical_lines(text):
        word, _, rest = logical.partition(" ")
        rest = rest.strip()
        try:
            op = Op(word.upper())
        except ValueError:
            raise SpecError(
                f"Dockerfile line {line}: {word.upper()} is not supported by the root-filesystem builder "
                f"(study/deploy/local/dockerfile.py); use RUN, COPY, ENV, WORKDIR or USER"
            ) from None
        if op is Op.FROM and out:
            raise SpecError(f"Dockerfile line {line}: a second FROM (multi-stage builds are not supported)")
        if op is not Op.FROM and not out:
            raise SpecError(f"Dockerfile line {line}: the first instruction must be FROM")
        args: tuple[str, ...] = ()
        pairs: tuple[tuple[str, str], ...] = ()
        if op is Op.FROM:
            if len(rest.split()) != 1:
                raise SpecError(f"Dockerfile line {line}: FROM takes one image (no AS, no --platform)")
            args = (rest,)
        elif op in (Op.RUN, Op.CMD, Op.ENTRYPOINT):
            form = _exec_form(rest)
            args = tuple(form) if form is not None else ("/bin/sh", "-c", rest)
        elif op is Op.COPY:
            if rest.startswith("--"):
                raise SpecError(f"Dockerfile line {line}: COPY flags ({rest.split()[0]}) are not supported")
            parts = _exec_form(rest) or shlex.split(rest)
            if len(parts) < 2:
                raise SpecError(f"Dockerfile line {line}: COPY needs a source and a destination")
            args = tuple(expand(p, env) for p in parts)
        elif op is Op.ENV:
            pairs = _env_pairs(rest, line, env)
            env.update(pairs)
        elif op is Op.WORKDIR:
            path = expand(rest, env)
            if not path.startswith("/"):
                raise SpecError(f"Dockerfile line {line}: WORKDIR {path} must be absolute")
            args = (path,)
        elif op is Op.USER:
            user = expand(rest, env)
            if not re.fullmatch(r"[0-9]+(:[0-9]+)?", user):
                raise SpecError(
                    f"Dockerfile line {line}: USER {user} must be a numeric uid[:gid] (the kubelet can only "
                    f"verify runAsNonRoot for a numeric user)"
                )
            args = (user,)
        else:
            args = tuple(shlex.split(rest))
        out.append(Instruction(op, logical, line, args, pairs))
    if not out:
        raise SpecError("the Dockerfile has no instructions")
    return out


def _env_pairs(rest: str, line: int, env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:  # the legacy form: ENV KEY the rest of the line
        key, _, value = rest.partition(" ")
        return ((key, expand(value.strip(), env)),)
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise SpecError(f"Dockerfile line {line}: ENV {word!r} is not KEY=VALUE")
        pairs.append((key, expand(value, {**env, **dict(pairs)})))
    return tuple(pairs)


def image_config(instructions: list[Instruction], base: ImageConfig) -> ImageConfig:
    """The image's process defaults after every instruction, starting from its base image's."""
    env = dict(base.env)
    workdir, user, entrypoint, cmd = base.workdir, base.user, base.entrypoint, base.cmd
    labels = dict(base.labels)
    for ins in instructions:
        if ins.op is Op.ENV:
            env.update(ins.env)
        elif ins.op is Op.WORKDIR:
            workdir = ins.args[0]
        elif ins.op is Op.USER:
            user = ins.args[0]
        elif ins.op is Op.ENTRYPOINT:
            entrypoint, cmd = ins.args, ()  # Docker resets CMD when ENTRYPOINT is set
        elif ins.op is Op.CMD:
            cmd = ins.args
        elif ins.op is Op.LABEL:
            labels.update(a.partition("=")[::2] for a in ins.args)
    return ImageConfig(tuple(env.items()), workdir, user, entrypoint, cmd, tuple(labels.items()))


def read(path: Path, base_env: dict[str, str] | None = None) -> list[Instruction]:
    return parse(path.read_text(), base_env)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**` any number of folders, `*` and `?` within one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class BuildContext:
    """The folder `docker build` sends, less what `.dockerignore` excludes (a pattern that matches
    a folder excludes everything in it; `!pattern` takes a path back; the last match wins)."""

    root: Path
    patterns: tuple[tuple[re.Pattern[str], bool], ...] = ()

    @classmethod
    def of(cls, root: Path) -> BuildContext:
        ignore = root / ".dockerignore"
        lines = ignore.read_text().splitlines() if ignore.is_file() else []
        patterns = []
        for raw in lines:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            negate = text.startswith("!")
            text = text.removeprefix("!").strip().lstrip("/").rstrip("/")
            patterns.append((_glob_regex(text), negate))
        return cls(root, tuple(patterns))

    def ignored(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for regex, negate in self.patterns:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result

    def files(self, source: str) -> list[tuple[str, Path]]:
        """(path relative to the source, file) for every file a COPY of `source` takes."""
        src = (self.root / source).resolve()
        if not src.is_relative_to(self.root.resolve()):
            raise SpecError(f"COPY {source}: outside the build context {self.root}")
        if not src.exists() or self.ignored(src.relative_to(self.root.resolve()).as_posix()):
            raise SpecError(f"COPY {source}: not in the build context {self.root} (or excluded by .dockerignore)")
        if src.is_file():
            return [(src.name, src)]
        out = []
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(self.root.resolve()).as_posix()
            if (path.is_file() or path.is_symlink()) and not self.ignored(rel):
                out.append((path.relative_to(src).as_posix(), path))
        return out
