"""Checks a study passes before Ray waits on anything: its storage answers, and one trial's
resources fit some node of the cluster it is given. Each failure is one line (SpecError) that
names the problem and the fix."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from study.errors import SpecError
from study.lake.store import check_listable, check_writable
from study.secrets import expand_env, redact, scrub

WORKER_GROUPS_ENV = "STUDY_WORKER_GROUPS"  # "cpu=8,gpu=1;cpu=4": node sizes an autoscaler may add
DB_WAIT_ENV = "STUDY_DB_WAIT_S"  # seconds the driver keeps trying a database that does not answer yet


def worker_groups(env: dict[str, str] | None = None) -> list[dict[str, float]]:
    """The node sizes an autoscaler may still start (set by `study k8s render` on the head):
    `cpu=8,gpu=1;cpu=4` is two groups."""
    raw = (env if env is not None else os.environ).get(WORKER_GROUPS_ENV, "")
    groups = []
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        sizes: dict[str, float] = {}
        for item in filter(None, (i.strip() for i in part.split(","))):
            key, eq, value = item.partition("=")
            try:
                if not eq or key.strip().lower() not in ("cpu", "gpu"):
                    raise ValueError(item)
                sizes[key.strip().lower()] = float(value)
            except ValueError:
                raise SpecError(
                    f"{WORKER_GROUPS_ENV}={raw!r} is not understood at {item!r}; write groups as "
                    f"cpu=N,gpu=M separated by ';'"
                ) from None
        groups.append({"CPU": sizes.get("cpu", 0.0), "GPU": sizes.get("gpu", 0.0)})
    return groups


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A Ray cluster answers at `address` (host:port of its head, or ray://host:port of its
    client server): a TCP connection opens within `timeout_s` ('auto' and 'local' are Ray's)."""
    import socket

    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SpecError(f"--address {address} is not host:port; give the head node's address, e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except OSError as e:
        why = e.strerror or type(e).__name__
    raise SpecError(
        f"no Ray cluster answers at {address} ({why}); start one there (ray start --head --port={port}) or leave "
        f"--address out (and RAY_ADDRESS unset) to run on a local Ray"
    )


def check_fits(
    cpu: float, gpu: float, nodes: list[dict[str, Any]], groups: list[dict[str, float]] | None = None, lineages: int = 1
) -> None:
    """A task of `lineages` lineages (packed when more than one) needs `cpu` CPUs and `gpu` GPUs
    on a single node: some live node, or some worker group an autoscaler may start, must be
    that big."""
    candidates = [*nodes, *(worker_groups() if groups is None else groups)]
    if any(n.get("CPU", 0) >= cpu and n.get("GPU", 0) >= gpu for n in candidates):
        return
    most_cpu = max((n.get("CPU", 0) for n in candidates), default=0)
    most_gpu = max((n.get("GPU", 0) for n in candidates), default=0)
    raise SpecError(
        f"{f'a task of {lineages} packed lineages' if lineages > 1 else 'a lineage'} needs {cpu:g} CPU and {gpu:g} GPU "
        f"on one node (resources), but no node of this cluster is that "
        f"big (the most any node has: {most_cpu:g} CPU, {most_gpu:g} GPU); lower resources.cpu/gpu or run on a "
        f"cluster with a node that big"
    )


def _within(seconds: float, what: str, call: Callable[[], Any], url: str = "") -> Any:
    """Run `call` on a thread; a call that hangs past `seconds` is reported as unreachable. `url`:
    the secret-bearing URL whose password must not reach the message."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # reported below, in one line
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise SpecError(f"{what} did not answer within {seconds:g} s; check the address and that it is running")
    if "error" in box:
        e = box["error"]
        if isinstance(e, SpecError):
            raise e
        if isinstance(e, ImportError) or "DB access module" in str(e) or "dialect" in str(e).lower():
            raise SpecError(
                f"{what}: no database driver for this URL here ({type(e).__name__}); use "
                f"postgresql://, sqlite:/// or a journal file path, or install the driver"
            )
        first = scrub(redact((str(e).strip().splitlines() or [type(e).__name__])[0]), url)
        raise SpecError(
            f"{what} is unreachable ({type(e).__name__}: {first}); check the URL, that the server is "
            f"up, and its credentials"
        )
    return box.get("value")


def db_wait_seconds(env: dict[str, str] | None = None) -> float:
    """How long to keep trying a database that does not answer yet ($STUDY_DB_WAIT_S; 0: once)."""
    raw = (env if env is not None else os.environ).get(DB_WAIT_ENV, "0")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise SpecError(f"{DB_WAIT_ENV}={raw!r} is not a number of seconds >= 0")
    return seconds


# What a database that is not up yet answers (its pod starting, its Service without endpoints);
# anything else (a wrong password, a missing database or driver) will not change by waiting.
NOT_UP_YET = (
    "did not answer within",
    "Connection refused",
    "could not translate host name",
    "Name or service not known",
    "No route to host",
    "the database system is starting up",
)


def _waiting(seconds: float, attempt: Callable[[], Any], pause: float = 2.0) -> Any:
    """`attempt()` until it succeeds or `seconds` have passed, while it fails as a database
    that is not up yet does (a database that starts beside the driver answers a little later);
    the last failure, said once, with how long it waited."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except SpecError as e:
            left = deadline - time.monotonic()
            if not any(sign in str(e) for sign in NOT_UP_YET):
                raise
            if left <= 0:
                if seconds > 0:
                    raise SpecError(f"{e} (still so after waiting {seconds:g} s, {DB_WAIT_ENV})") from None
                raise
            time.sleep(min(pause, left))


def check_storage(study, timeout_s: float = 20.0) -> None:
    """The lake of a prepared study can be written, and its Optuna database and Tune's object
    storage answer."""
    from study.search.optuna_io import optuna_storage
    from study.search.tune import optuna_url, tune_root

    check_writable(study.storage.results)

    url = optuna_url(study)
    if "://" in url:
        secret = expand_env(url, f"optuna storage {redact(url)}")
        what = f"optuna storage {redact(url)}"
        _waiting(db_wait_seconds(), lambda: _within(timeout_s, what, lambda: optuna_storage(url), secret))
    else:
        check_writable(
            os.path.dirname(url) or ".",
            "the Optuna journal's folder",
            "point storage.optuna at a file in a writable folder",
        )
    tune_path = tune_root(study)
    if not check_listable(tune_path, study.storage.results) and "://" in tune_path:  # a URI of another scheme
        import pyarrow.fs as pafs

        def probe() -> None:
            fs, path = pafs.FileSystem.from_uri(tune_path)
            fs.get_file_info(path)

        _within(timeout_s, f"tune storage {redact(tune_path)}", probe, tune_path)
