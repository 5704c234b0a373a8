"""HDF5 outputs: atomic writes (an interrupted write leaves no file), provenance, and clear read errors."""

import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from d3hr import D3HRError
from d3hr.h5io import atomic_output, check_finite, open_h5, read_attrs, write_h5


def test_write_and_read_back(tmp_path):
    p = tmp_path / "a.h5"
    write_h5(p, {"x": np.arange(6.0).reshape(2, 3), "g/ids": np.array(["a.png", "é.png"], dtype=object)},
             {"ipc": 10, "timesteps": [480, 600], "model": tmp_path})
    with open_h5(p) as f:
        assert f["x"][:].tolist() == [[0, 1, 2], [3, 4, 5]]
        assert [s.decode() for s in f["g/ids"][:]] == ["a.png", "é.png"]
        assert f["x"].compression == "gzip"
        a = read_attrs(f)
    assert a["ipc"] == 10 and a["timesteps"] == [480, 600] and a["model"] == str(tmp_path)


def test_strings_read_back_are_copied_as_themselves(tmp_path):
    """h5py reads strings back as bytes: a stage that copies them on (invert copies encode's image ids) must store the
    strings, not the bytes' repr ("b'a.png'")."""
    write_h5(tmp_path / "a.h5", {"ids": np.array(["a.png", "é.png"], dtype=object)})
    with open_h5(tmp_path / "a.h5") as f:
        ids = f["ids"][:]
    assert isinstance(ids[0], bytes)
    write_h5(tmp_path / "b.h5", {"ids": ids})
    with open_h5(tmp_path / "b.h5") as f:
        assert [s.decode() for s in f["ids"][:]] == ["a.png", "é.png"]


def test_exception_leaves_no_file(tmp_path):
    p = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with atomic_output(p) as tmp, h5py.File(tmp, "w") as f:
            f["x"] = np.zeros(10)
            raise RuntimeError("crash in the middle of the write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_an_existing_folder_only_on_success(tmp_path):
    out = tmp_path / "imgs"
    with atomic_output(out, directory=True) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a.png").write_bytes(b"1")
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    with pytest.raises(RuntimeError):
        with atomic_output(out, directory=True) as tmp:
            (tmp / "b.png").write_bytes(b"2")
            raise RuntimeError("crash in the middle of the folder")
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # the old folder stays, whole
    with atomic_output(out, directory=True) as tmp:
        (tmp / "c.png").write_bytes(b"3")
    assert sorted(p.name for p in out.iterdir()) == ["c.png"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # no temporary or old folder left


def test_atomic_folder_keeps_the_old_folder_when_the_rename_fails(tmp_path, monkeypatch):
    import d3hr.h5io as h5io

    out = tmp_path / "imgs"
    out.mkdir()
    (out / "a.png").write_bytes(b"1")
    real = os.replace

    def failing(src, dst):
        if ".tmp-" in str(src):
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(h5io.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        with atomic_output(out, directory=True) as tmp:
            (tmp / "b.png").write_bytes(b"2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_sigkill_during_write_leaves_no_output(tmp_path):
    p = tmp_path / "out.h5"
    code = f"""
import time, h5py, numpy as np
from d3hr.h5io import atomic_output
with atomic_output({str(p)!r}) as tmp, h5py.File(tmp, "w") as f:
    f["x"] = np.zeros(1000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not p.exists()  # only a hidden .out.h5.tmp-PID may remain, which no rule takes as an output
    assert all(q.name.startswith(".out.h5.tmp-") for q in tmp_path.iterdir())


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(D3HRError, match="junk.h5"):
        open_h5(tmp_path / "junk.h5")
    with pytest.raises(D3HRError, match="nope.h5"):
        open_h5(tmp_path / "nope.h5")


def test_check_finite_names_rows():
    x = np.zeros((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(D3HRError, match=r"latents.*NaN/Inf.*\[2\]"):
        check_finite(x, "f.h5", "latents")
