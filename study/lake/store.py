"""Where a lake's files live: a local folder, or an `s3://bucket/prefix` on any S3-compatible
endpoint. Every lake path is a string: a local path, or an `s3://` URI. `store_for(path)` gives
the store that reads and writes it, with the same operations on both:

- a table is written whole or not at all (locally a temp file renamed into place; on S3 one
  object, which appears only when its upload completes), and re-writing a path replaces it;
- a listing gives each file's `Stamp`, which changes whenever the file is re-written.

S3 endpoint and credentials come from the standard environment (`AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `AWS_REGION`, a web
identity on Kubernetes), never from the URI: a URI that carries a key is refused."""

from __future__ import annotations

import atexit
import functools
import io
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from study.errors import SpecError

Stamp = tuple[int, int, int, int]  # local: (inode, ctime_ns, mtime_ns, size); S3: (0, 0, mtime_ns, size)
S3_SCHEME = "s3://"


def is_remote(path: str | Path) -> bool:
    return str(path).startswith(S3_SCHEME)


def join(root: str | Path, *parts: str) -> str:
    """A path under `root`, as a string (the separator is '/' on both stores)."""
    return "/".join([str(root).rstrip("/"), *parts])


def parent(path: str) -> str:
    return posixpath.dirname(path)


def normalize_root(root: str | Path) -> str:
    """A lake root (or any path of a study's storage) as every node names it: an absolute local
    path (`~` expanded, symlinks kept), or the s3:// URI checked, without a trailing '/'. The one
    rule: every caller that names a lake normalises it here."""
    text = str(root).strip()
    if not text:
        raise SpecError("the results lake path is empty; pass --results with a folder or an s3://bucket/prefix")
    if is_remote(text):
        _bucket_key(text)
        return text.rstrip("/")
    if "://" in text:
        raise SpecError(
            f"results lake {text!r}: only local folders and s3://bucket/prefix are supported; "
            f"use an S3-compatible endpoint (AWS_ENDPOINT_URL) for other object stores"
        )
    return str(Path(text).expanduser().absolute())


_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")  # today's rules, and legacy names


def normalize_uri(uri: str) -> str:
    """A storage URI a study names (Tune's storage): a local path or an s3:// URI as
    `normalize_root` gives it; a URI of another scheme as written (its library resolves it)."""
    return uri if "://" in uri and not is_remote(uri) else normalize_root(uri)


def _bucket_key(uri: str) -> str:
    """`bucket/key` of an s3:// URI, refusing credentials, options, a bucket name S3 would
    refuse, and empty, '.' or '..' parts (S3 keeps them literally: not the folder meant)."""
    rest = uri[len(S3_SCHEME) :]
    bucket = rest.split("/", 1)[0]
    if "@" in rest:  # keys, even with '/' in them, or an '@' no lake prefix needs
        raise SpecError(
            f"the S3 URI {redact_s3(uri)} carries credentials; write s3://bucket/prefix and put the keys in "
            f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or a Kubernetes Secret)"
        )
    if "?" in rest or "#" in rest:
        raise SpecError(
            f"the S3 URI {re.split('[?#]', uri)[0]} carries options (?... or #...); write s3://bucket/prefix and "
            f"set the endpoint in AWS_ENDPOINT_URL"
        )
    if not bucket:
        raise SpecError(f"the S3 URI {uri!r} names no bucket; write s3://bucket/prefix")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        where = "; an endpoint's host:port goes in AWS_ENDPOINT_URL" if ":" in bucket else ""
        raise SpecError(f"{bucket!r} in {uri} is not an S3 bucket name (letters, digits, '.', '-', '_'){where}")
    key = rest.rstrip("/")
    if any(part in ("", ".", "..") for part in key.split("/")[1:]):
        raise SpecError(f"the S3 URI {uri} has an empty, '.' or '..' part; write s3://bucket/prefix/with/parts")
    return key


def redact_s3(uri: str) -> str:
    """An s3:// URI with everything before its last '@' (keys, which may hold '/') as ***."""
    head, at, tail = uri[len(S3_SCHEME) :].rpartition("@")
    return f"{S3_SCHEME}***@{tail}" if at else uri


class StoreUnavailable(OSError):
    """The store did not answer a read (network, throttling, 5xx): unlike a corrupt file, the
    reader does not skip it, and the next read tries again."""


@dataclass(frozen=True)
class CheckpointPlace:
    """Where a lineage keeps its resume file, as its lake's store decides: `folder`, on this
    node's disk, is where it saves after every round; `durable`, when not None, is the lake's
    folder it uploads that file to (an object store: any node resumes from it); `lake` is the
    lake's checkpoint folder either way. `scratch`: `folder` is ours to remove once the lineage
    stops (the lake holds the copy)."""

    folder: Path
    lake: str
    durable: str | None = None
    scratch: bool = False

    def fetch(self, name: str, fresh: bool) -> None:
        """Before a lineage loads its checkpoint `name`: the lake's copy in `folder` (none when
        `fresh`, or when the lake holds none: a stale file on this node is not the one to resume)."""
        if self.durable is None:
            return
        local = self.folder / name
        if fresh or not store_for(self.durable).get_file(join(self.durable, name), local):
            local.unlink(missing_ok=True)

    def upload(self, name: str) -> None:
        """After a round: the file saved in `folder` to the lake (nothing when it is in the lake)."""
        if self.durable is not None:
            store_for(self.durable).put_file(self.folder / name, join(self.durable, name))

    def move(self, name: str, target: str) -> None:
        """The lake's copy of `name` to `target` (superseded), when there is one."""
        source = join(self.durable, name) if self.durable is not None else str(self.folder / name)
        store = store_for(source)
        if store.exists(source):
            store.move(source, target)

    def release(self) -> None:
        """The lineage stopped: a scratch folder goes (the lake holds the copy)."""
        if self.scratch:
            shutil.rmtree(self.folder, ignore_errors=True)

    def drop(self) -> None:
        """The lineage finished for good: its resume state goes, the lake's and this node's."""
        store = store_for(self.lake)
        if self.durable is None:
            shutil.rmtree(self.lake, ignore_errors=True)
            return
        for path in store.files(self.lake):
            store.remove(path)
        if self.scratch:
            shutil.rmtree(self.folder, ignore_errors=True)


class Store(Protocol):
    on_disk: bool  # its paths are files this node's filesystem opens (a local or mounted folder)
    read_threads: int  # files a reader reads at once

    def checkpoint_place(self, lake: str, scratch: Path, workdir: Path | None) -> CheckpointPlace: ...
    def check_writable(self, root: str, what: str, fix: str) -> None: ...
    def check_readable(self, root: str) -> None: ...
    def files(self, under: str) -> dict[str, Stamp]: ...
    def stamp(self, path: str) -> Stamp | None: ...
    def exists(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def read_table(self, path: str, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table: ...
    def write_table(self, table: pa.Table, path: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def move(self, source: str, target: str) -> None: ...
    def put_file(self, local: Path, path: str) -> None: ...
    def get_file(self, path: str, local: Path) -> bool: ...
    def write_bytes(self, data: bytes, path: str) -> None: ...
    def read_bytes(self, path: str) -> bytes: ...


def write_local(target: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` into a dot-prefixed temp file beside `target`, then rename it into place:
    readers see the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class LocalStore:
    """A lake in a local (or network-mounted) folder."""

    on_disk = True
    read_threads = 4  # Parquet decoding releases the GIL: small files read about 2x faster on two cores

    def checkpoint_place(self, lake: str, scratch: Path, workdir: Path | None) -> CheckpointPlace:
        """A lineage saves its checkpoint straight into the lake (or its `workdir`)."""
        return CheckpointPlace(Path(workdir) if workdir is not None else Path(lake), lake)

    def check_writable(self, root: str, what: str, fix: str) -> None:
        """The folder, or the nearest folder above it that exists, is a writable folder."""
        path = Path(normalize_root(root))
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            why = f"{existing} is a file"
        else:
            try:  # a probe folder, removed at once: the only sure test (root ignores permission bits)
                os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=existing))
                return
            except OSError as e:
                why = e.strerror or type(e).__name__
        raise SpecError(f"{what} {path} is not writable ({why}); {fix}")

    def check_readable(self, root: str) -> None:
        """Nothing to ask a folder beforehand: a missing one reads as an empty lake."""

    def files(self, under: str) -> dict[str, Stamp]:
        found = {}
        for folder, dirs, names in os.walk(under):
            dirs.sort()
            for n in sorted(names):  # the same order on every filesystem
                path = os.path.join(folder, n)
                stamp = self.stamp(path)
                if stamp is not None:  # else removed between listing and stat (a fold, a compaction)
                    found[path] = stamp
        return found

    def stamp(self, path: str) -> Stamp | None:
        """Files are replaced by rename, so a re-written file has a new inode and ctime even
        when its mtime and size repeat. None: the file is gone."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size

    def exists(self, path: str) -> bool:
        return os.path.isfile(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def read_table(self, path: str, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(path, schema=schema, columns=columns)

    def write_table(self, table: pa.Table, path: str) -> None:
        write_local(Path(path), lambda tmp: pq.write_table(table, tmp))

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def move(self, source: str, target: str) -> None:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def put_file(self, local: Path, path: str) -> None:
        if Path(path).resolve() != Path(local).resolve():
            write_local(Path(path), lambda tmp: shutil.copyfile(local, tmp))

    def get_file(self, path: str, local: Path) -> bool:
        if not os.path.isfile(path):
            return False
        self.put_file(Path(path), str(local))
        return True

    def write_bytes(self, data: bytes, path: str) -> None:
        write_local(Path(path), lambda tmp: tmp.write_bytes(data))

    def read_bytes(self, path: str) -> bytes:
        return Path(path).read_bytes()


CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0


_CLIENT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE",
               "AWS_CONFIG_FILE", "AWS_CA_BUNDLE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
               "AWS_EC2_METADATA_DISABLED")  # fmt: skip


def lake_identity(root: str) -> str:
    """What tells two lakes apart on one node: an object-store lake's URI and its endpoint (two
    S3 servers may each hold a bucket of one name), a local lake's path."""
    if not is_remote(root):
        return root
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    return f"{endpoint}|{root}"


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 client configured from the standard AWS environment (the endpoint too: pyarrow's
    constructor does not read AWS_ENDPOINT_URL itself). One per process and environment, so
    credentials from a web identity or instance profile are fetched once, not per file."""
    return _s3_client(tuple(os.environ.get(name) for name in _CLIENT_ENV))


@functools.lru_cache(maxsize=8)
def _s3_client(env: tuple[str | None, ...]) -> pafs.S3FileSystem:
    endpoint_s3, endpoint, region, default_region = env[:4]
    return pafs.S3FileSystem(
        endpoint_override=endpoint_s3 or endpoint or None,
        region=region or default_region or None,
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        allow_bucket_creation=False,
        allow_bucket_deletion=False,
    )


atexit.register(_s3_client.cache_clear)  # a client still alive at interpreter exit can hang it (apache/arrow#50188)


@dataclass
class S3Store:
    """A lake under an s3:// prefix. Objects are written whole (an upload that does not complete
    leaves nothing), so no temp names are needed; a move is a copy and a delete."""

    fs: pafs.S3FileSystem
    on_disk = False
    read_threads = 32  # an object store's latency, not decoding, bounds a read of many small objects

    @staticmethod
    def key(path: str) -> str:
        return _bucket_key(path)

    def checkpoint_place(self, lake: str, scratch: Path, workdir: Path | None) -> CheckpointPlace:
        """A lineage saves its checkpoint on this node's disk (`workdir`, else a scratch folder
        removed when it stops) and uploads it to the lake after every round."""
        folder = Path(workdir) if workdir is not None else scratch
        return CheckpointPlace(folder, lake, durable=lake, scratch=workdir is None)

    def check_writable(self, root: str, what: str, fix: str) -> None:
        check_s3_lake(root)

    def check_readable(self, root: str) -> None:
        check_s3_lake(root, write=False)

    def files(self, under: str) -> dict[str, Stamp]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.key(under), recursive=True, allow_not_found=True))
        return {
            S3_SCHEME + i.path: (0, 0, i.mtime_ns or 0, i.size or 0)
            for i in sorted(infos, key=lambda i: i.path)
            if i.type == pafs.FileType.File
        }

    def stamp(self, path: str) -> Stamp | None:
        info = self.fs.get_file_info(self.key(path))
        return None if info.type != pafs.FileType.File else (0, 0, info.mtime_ns or 0, info.size or 0)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(self.key(path)).type == pafs.FileType.File

    def is_dir(self, path: str) -> bool:
        return self.fs.get_file_info(self.key(path)).type == pafs.FileType.Directory

    def read_table(self, path: str, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
        try:
            with self.fs.open_input_stream(self.key(path)) as f:  # one GET: lake objects are small
                data = f.read()
        except FileNotFoundError:
            raise
        except OSError as e:  # the store failed, not the object: a reader must not skip it for good
            raise StoreUnavailable(str(e)) from e
        return pq.read_table(pa.BufferReader(data), schema=schema, columns=columns)

    def write_table(self, table: pa.Table, path: str) -> None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        with self.fs.open_output_stream(self.key(path)) as out:
            out.write(buffer.getvalue())

    def remove(self, path: str) -> None:
        try:
            self.fs.delete_file(self.key(path))
        except FileNotFoundError:
            pass

    def move(self, source: str, target: str) -> None:
        self.fs.copy_file(self.key(source), self.key(target))
        self.fs.delete_file(self.key(source))

    def put_file(self, local: Path, path: str) -> None:
        """Upload under a temporary key, then copy into place: pyarrow completes an upload when
        its stream closes, even one cut short by an error, so `path` never holds part of a file.
        (S3's copy takes up to 5 GiB: a VGG-19 lineage's checkpoint is about 0.4 GiB.)"""
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.uploading"
        try:
            with open(local, "rb") as f, self.fs.open_output_stream(self.key(tmp)) as out:
                shutil.copyfileobj(f, out, 8 << 20)
            if self.fs.get_file_info(self.key(tmp)).size != os.path.getsize(local):
                raise OSError(f"the upload of {local} to {path} came out short")
            self.fs.copy_file(self.key(tmp), self.key(path))
        finally:
            self.remove(tmp)

    def get_file(self, path: str, local: Path) -> bool:
        if not self.exists(path):
            return False

        def download(tmp: Path) -> None:
            with self.fs.open_input_stream(self.key(path)) as f, open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 8 << 20)

        write_local(Path(local), download)
        return True

    def write_bytes(self, data: bytes, path: str) -> None:
        """Under a temporary key, its size checked, then copied into place (as `put_file`)."""
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.uploading"
        try:
            with self.fs.open_output_stream(self.key(tmp)) as out:
                out.write(data)
            if self.fs.get_file_info(self.key(tmp)).size != len(data):
                raise OSError(f"the upload to {path} came out short")
            self.fs.copy_file(self.key(tmp), self.key(path))
        finally:
            self.remove(tmp)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(self.key(path)) as f:
            return f.read()


def store_for(path: str | Path) -> Store:
    """The store that holds `path`."""
    return S3Store(s3_filesystem()) if is_remote(path) else LocalStore()


def check_writable(
    root: str | Path, what: str = "results lake", fix: str = "pass --results with a writable folder"
) -> None:
    """Fail with one line, before anything runs or is created, when a lake (or a folder a study
    writes, `what`) cannot be written: a folder, or the nearest folder above it that exists,
    must be a writable folder; an s3:// lake's endpoint must answer, its bucket exist and the
    credentials write to it."""
    store_for(root).check_writable(normalize_root(root), what, fix)


def filesystem_of(uri: str) -> tuple[str, pafs.FileSystem | None]:
    """A storage URI as (path, filesystem) for pyarrow and Tune: an s3:// one gets the client
    configured from the AWS environment (the endpoint too); other URIs and local paths are the
    caller's library's to resolve (None)."""
    uri = uri.rstrip("/")
    if is_remote(uri):
        return uri[len(S3_SCHEME) :], s3_filesystem()
    return uri, None


def check_listable(path: str, lake: str) -> bool:
    """An s3:// `path` answers and may be listed (nothing to check when it lies in the bucket of
    `lake`, whose own check covered it). False when `path` is not an S3 path: a local folder,
    or a URI of another scheme for its user to probe."""
    if not is_remote(path):
        return False
    if not (is_remote(lake) and _bucket_key(path).split("/")[0] == _bucket_key(lake).split("/")[0]):
        check_s3_lake(path, write=False)  # a probe object would leave a folder marker where Tune writes
    return True


def storage_error(e: OSError, root: str | Path | None = None) -> SpecError:
    """An object store's failure as one line that names the problem and the fix (`root`: the
    lake or prefix it was used for, else the bucket the error names)."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "(AWS's own)"
    named = re.search(r"bucket '([^']+)'", text)
    bucket = str(root)[len(S3_SCHEME) :].split("/", 1)[0] if root else (named.group(1) if named else "?")
    where = str(root) if root else f"s3://{bucket}"
    if any(s in text for s in ("NETWORK_CONNECTION", "Could not connect", "Could not resolve", "curlCode")):
        return SpecError(
            f"the S3 endpoint {endpoint} does not answer for {where}; check AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) "
            f"and that the server is up"
        )
    if any(s in text for s in ("ACCESS_DENIED", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden")):
        return SpecError(
            f"S3 at {endpoint} refused the credentials for bucket {bucket}; check AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may read and write s3://{bucket}"
        )
    if "NoSuchBucket" in text or "NO_SUCH_BUCKET" in text or "does not exist" in text:
        return SpecError(f"bucket {bucket} does not exist at {endpoint}; create it, or fix the s3:// URI ({where})")
    return SpecError(f"the storage at {where} cannot be used ({text}); check the path and the storage")


def check_s3_lake(root: str, write: bool = True) -> None:
    """An s3:// prefix answers, its bucket exists and the keys may list it; with `write`, a
    probe object can be written and removed too (pyarrow leaves at most an empty folder marker
    for the prefix). One-line SpecError otherwise."""
    fs = s3_filesystem()
    bucket_key = _bucket_key(root)
    bucket = bucket_key.split("/", 1)[0]
    probe = f"{bucket_key}/.write-probe-{uuid.uuid4().hex}"
    try:
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise OSError("NoSuchBucket")
        fs.get_file_info(pafs.FileSelector(bucket_key, allow_not_found=True))
        if write:
            with fs.open_output_stream(probe) as out:
                out.write(b"probe")
            fs.delete_file(probe)
    except OSError as e:
        raise storage_error(e, root) from None
