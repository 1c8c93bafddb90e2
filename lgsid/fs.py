"""One filesystem layer for every location LGSID writes outside Delta and MLflow (``pyarrow.fs``).

Checkpoints, staging scratch and the Petastorm cache are given in the config as a local path or a
URI (``file:///…``, ``s3a://bucket/…``, ``s3://…``, ``gs://…``, ``hdfs://…``). Every function here
takes either and goes through ``pyarrow.fs.FileSystem.from_uri``, so a local run and a cluster run
execute the same code; a URI is never turned into a local path (``os.path.abspath("s3a://b/x")``
would be a folder named ``s3a:`` in the working directory).

Hadoop's ``s3a://`` / ``s3n://`` schemes (what Spark configs use) are read as ``s3://`` by pyarrow;
credentials and endpoints come from pyarrow's usual environment (``AWS_*``).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

_HADOOP_S3 = ("s3a://", "s3n://")
# RFC 3986 scheme; two characters at least, so a Windows drive (``C:\x``) stays a path.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def is_uri(location: str) -> bool:
    """Whether ``location`` starts with a scheme (``s3a://…``, ``file:/…``, MLflow's
    ``mlflow-artifacts:/…``) rather than being a local path.

    Examples:
        ``"s3a://b/x"``, ``"file:///tmp/x"``, ``"mlflow-artifacts:/lgsid"`` -> True;
        ``"lgsid-work/ck"``, ``"/tmp/x"`` -> False.
    """
    return bool(_SCHEME.match(location))


def to_uri(location: str) -> str:
    """``location`` as a URI: a local path becomes an absolute ``file://`` URI; a URI is returned unchanged.

    Examples:
        ``"lgsid-work/ck"`` -> ``"file:///<cwd>/lgsid-work/ck"``; ``"s3a://b/ck"`` -> ``"s3a://b/ck"``.
    """
    if is_uri(location):
        return location
    return Path(location).expanduser().resolve().as_uri()


def _pyarrow_uri(uri: str) -> str:
    """The URI as pyarrow spells it (``s3a://`` / ``s3n://`` -> ``s3://``)."""
    for p in _HADOOP_S3:
        if uri.startswith(p):
            return "s3://" + uri[len(p):]
    return uri


def resolve(location: str):
    """``(pyarrow FileSystem, path inside it)`` for a local path or URI."""
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(_pyarrow_uri(to_uri(location)))


def local_path(location: str) -> str | None:
    """The absolute local path of ``location`` when it is on this machine's filesystem (a path or a
    ``file:`` URI), else ``None`` (an object store: write to a local directory and :func:`copy_dir` it).

    Examples:
        ``"file:///tmp/r"`` -> ``"/tmp/r"``; ``"s3a://b/r"`` -> ``None``.
    """
    from pyarrow import fs as pafs

    fs, path = resolve(location)
    return path if isinstance(fs, pafs.LocalFileSystem) else None


def join(location: str, *parts: str) -> str:
    """``location/part/…`` with ``/`` separators (a URI stays a URI, a path stays a path)."""
    out = location.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def makedirs(location: str) -> None:
    """Create the directory ``location`` and its parents (a no-op on object stores without directories)."""
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


def exists(location: str) -> bool:
    """Whether a file or directory exists at ``location``."""
    from pyarrow import fs as pafs

    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(location: str, suffix: str = "") -> list[str]:
    """Files directly under directory ``location`` whose name ends with ``suffix``, sorted, as locations
    of the same kind as ``location`` (``join(location, name)``); ``[]`` when the directory is absent."""
    from pyarrow import fs as pafs

    fs, path = resolve(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix))
    return [join(location, n) for n in names]


def read_bytes(location: str) -> bytes:
    """The whole file at ``location``."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(location: str, data: bytes) -> None:
    """Write ``data`` to ``location`` through a temporary sibling and a move, so a reader (or a crash)
    never sees half a file. Parent directories are created."""
    fs, path = resolve(location)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def delete_file(location: str) -> None:
    """Delete one file."""
    fs, path = resolve(location)
    fs.delete_file(path)


def delete_dir(location: str) -> None:
    """Delete a directory and everything under it (a no-op when it is absent)."""
    from pyarrow import fs as pafs

    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def copy_dir(src: str, dst: str) -> None:
    """Copy every file under ``src`` to ``dst`` (either may be local or a URI; same relative layout)."""
    from pyarrow import fs as pafs

    sfs, spath = resolve(src)
    dfs, dpath = resolve(dst)
    dfs.create_dir(dpath, recursive=True)
    pafs.copy_files(spath, dpath, source_filesystem=sfs, destination_filesystem=dfs)


def read_dir(location: str) -> dict[str, bytes]:
    """Every file under directory ``location`` as ``{relative path: bytes}`` (small directories only:
    an adapter, a tokenizer), for handing a directory to another process without a shared path."""
    from pyarrow import fs as pafs

    fs, path = resolve(location)
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[os.path.relpath(info.path, path)] = f.read()
    return out


def write_dir(location: str, files: dict[str, bytes]) -> None:
    """Write ``{relative path: bytes}`` (from :func:`read_dir`) under directory ``location``."""
    for rel, data in files.items():
        write_bytes(join(location, rel), data)
