"""HDF5 output: atomic (temporary file + rename), chunked and compressed, with provenance attributes
(docs/reliability.md)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np

from . import D3HRError, __version__


@contextlib.contextmanager
def atomic_output(path, directory: bool = False):
    """Yield a temporary path beside `path` (an empty folder if `directory`); when the block succeeds it replaces
    `path` (a file, or a whole folder), when it fails it is removed.

    A crash (even SIGKILL) never leaves a partial `path`: at most a hidden `.name.tmp-PID`, and, killed between the
    two renames that replace a folder, no `path` (the job reruns) and the old folder as `.name.old-PID`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    _remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if tmp.is_dir() and path.is_dir() and not path.is_symlink():
            # os.replace cannot replace a folder that has files: move the old one aside, and back if the rename fails
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            _remove(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            if tmp.is_dir() and (path.exists() or path.is_symlink()):
                path.unlink()  # a file or a symlink where the folder goes
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(p: Path):
    if p.is_dir() and not p.is_symlink():
        import shutil

        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _attr_value(v):
    if v is None:
        return "null"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v)
    if isinstance(v, (str, Path)):
        return str(v)  # plain str: h5py cannot store str subclasses such as torch's TorchVersion
    return v


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def stage_code_version(module: str) -> str:
    """The code version of a d3hr module and its imports (d3hr/versions.py: the value a rule of that stage reruns on),
    from the workflow's cache of module hashes when the job runs in the workflow's folder."""
    from .versions import module_version

    cache = Path(".snakemake/d3hr")
    return module_version(module.rpartition(".")[2], cache if cache.is_dir() else None)


def provenance(**kw) -> dict:
    """Provenance attributes: the caller's values plus the code version of the calling stage module and the library
    versions (read from the installed packages' metadata: importing diffusers only for its version would cost seconds
    in every small job)."""
    caller = sys._getframe(1).f_globals.get("__name__", "")
    out = {"d3hr_version": __version__, "torch_version": _version("torch"), "diffusers_version": _version("diffusers")}
    if caller.startswith(f"{__package__}."):
        out["code_version"] = stage_code_version(caller)
    out.update(kw)
    return out


def create_dataset(f: h5py.File, name: str, data=None, shape=None, dtype=None, maxshape=None):
    """A chunked, gzip-compressed dataset (scalars and empty arrays are stored plainly)."""
    if data is not None:
        data = np.asarray(data)
        shape, dtype = data.shape, data.dtype
    if dtype is not None and np.dtype(dtype).kind in "USO":
        dtype = h5py.string_dtype()
        if data is not None:
            data = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in data.ravel()],
                              dtype=object).reshape(data.shape)  # h5py reads strings back as bytes: not their repr
    kwargs = {}
    if len(shape) > 0 and (maxshape is not None or int(np.prod(shape)) > 0):
        kwargs = dict(chunks=True, compression="gzip", compression_opts=4, shuffle=True)
    return f.create_dataset(name, shape=shape, dtype=dtype, data=data, maxshape=maxshape, track_times=False, **kwargs)


def set_attrs(obj, attrs: dict):
    for k, v in attrs.items():
        obj.attrs[k] = _attr_value(v)


def write_h5(path, datasets: dict, attrs: dict | None = None):
    """Write `datasets` ({name: array}, names may contain '/') and `attrs` atomically to `path`."""
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for name, arr in datasets.items():
                create_dataset(f, name, data=arr)
            set_attrs(f, attrs or {})


def open_h5(path, what: str = "input"):
    """Open an HDF5 file for reading, with an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise D3HRError(f"{path}: {what} file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise D3HRError(f"{path}: not a readable HDF5 file ({e}); delete it and rerun the rule that makes it") from e


def read_attrs(f) -> dict:
    out = {}
    for k, v in f.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str) and v[:1] in "[{" :
            try:
                v = json.loads(v)
            except ValueError:
                pass
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def check_finite(arr: np.ndarray, path, name: str):
    """Fail with a clear message if `arr` holds NaN or Inf."""
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad.reshape(arr.shape[0], -1).any(axis=1) if arr.ndim > 1 else bad).ravel()
        raise D3HRError(
            f"{path}: dataset '{name}' holds {int(bad.sum())} NaN/Inf values (rows {idx[:10].tolist()}...); "
            "the upstream stage produced invalid numbers: check its log and rerun it"
        )
