"""The job server (d3hr/jobserver.py): jobs of a local run fork from one process with torch & co. imported; the
outputs, exit statuses, logs and cancellation behave as with a process per job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, copy_run, make_dataset, make_teacher, snakemake

from d3hr.jobserver import ENV, run_via_server, start_server, stop_server


def _pythonpath():
    return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running server; yields the environment of a job that uses it."""
    old = os.environ.pop(ENV, None)
    proc = start_server(log_dir=str(tmp_path_factory.mktemp("js")))
    env = dict(os.environ, PYTHONPATH=_pythonpath())
    os.environ.pop(ENV)
    if old:
        os.environ[ENV] = old
    yield env, proc
    os.environ[ENV] = env[ENV]
    stop_server(proc)
    os.environ.pop(ENV, None)
    if old:
        os.environ[ENV] = old


def d3hr(env, *args, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "d3hr", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, **kw)


def test_commands_run_in_the_server_with_their_exit_status(server, tmp_path):
    env, _ = server
    p = d3hr(env, "--version")
    assert p.returncode == 0 and p.stdout.startswith("d3hr ") and "ran in the job server" in p.stderr
    # an error a user can act on: exit status 2 and the message, as without a server; the job ran in cwd
    p = d3hr(env, "fit-gaussian", "--inverted", "missing.h5", "--latents", "missing.h5", "--out", "g.h5", cwd=tmp_path)
    assert p.returncode == 2 and "missing.h5" in p.stderr and "ran in the job server" in p.stderr
    assert not (tmp_path / "g.h5").exists()
    p = d3hr(env, "no-such-stage")  # argparse's exit inside the child
    assert p.returncode == 2 and "invalid choice" in p.stderr


def test_without_a_usable_server_the_client_runs_the_command_itself(server, monkeypatch):
    env, _ = server
    monkeypatch.delenv(ENV, raising=False)
    assert run_via_server(["--version"]) is None
    monkeypatch.setenv(ENV, "/nonexistent/socket")
    assert run_via_server(["--version"]) is None
    # a server of another Python environment (a job in its own conda environment) refuses
    monkeypatch.setenv(ENV, env[ENV])
    monkeypatch.setattr(sys, "prefix", "/another/environment")
    assert run_via_server(["--version"]) is None
    p = subprocess.run([sys.executable, "-m", "d3hr", "--version"], env=dict(env, **{ENV: "/nonexistent/socket"}),
                       capture_output=True, text=True)
    assert p.returncode == 0 and "job server" not in p.stderr


_POOLS = """
import json, os, threadpoolctl, torch


def main(argv=None):
    pools = {f"{p['user_api']} {os.path.basename(p['filepath'])}": p["num_threads"]
             for p in threadpoolctl.threadpool_info()}
    print(json.dumps({"torch": torch.get_num_threads(), **pools}))
    return 0
"""


def test_a_jobs_thread_pools_take_its_thread_count(server, tmp_path):
    """The job's OMP_NUM_THREADS (Snakemake's `threads`) limits the thread pools the server loaded: torch's, and every
    BLAS and OpenMP library's (numpy's and scipy's OpenBLAS, torch's OpenMP), as in a process of its own. The job is
    a `d3hr.cli` of its own that reports them (the child imports d3hr from the client's sys.path)."""
    env, _ = server
    pkg = tmp_path / "d3hr"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("__main__.py", "jobserver.py"):  # the client
        (pkg / name).write_bytes((REPO / "d3hr" / name).read_bytes())
    (pkg / "cli.py").write_text(_POOLS)
    for n in (1, 2):
        p = d3hr(dict(env, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS=str(n)), "pools", cwd=tmp_path)
        assert p.returncode == 0 and "ran in the job server" in p.stderr, p.stderr[-2000:]
        pools = json.loads(p.stdout)
        assert any(k.startswith("blas ") for k in pools) and any(k.startswith("openmp ") for k in pools), pools
        assert set(pools.values()) == {n}, pools


def _blocking_job(env, tmp_path):
    """An evaluation of a million steps on a tiny set: runs until killed."""
    data, teacher = make_dataset(tmp_path / "data", n_train=4, n_val=2), make_teacher(tmp_path / "t.pt", ["cat", "dog"])
    common = ["--labels", "0", "1", "--resolution", "16", "--channels", "3"]
    assert d3hr(env, "prepare-val", "--val-dirs", str(data / "val/cat"), str(data / "val/dog"), *common, "--crop",
                "1.0", "--out", str(tmp_path / "val.h5")).returncode == 0
    return ["evaluate", "--class-dirs", str(data / "train/cat"), str(data / "train/dog"), "--val",
            str(tmp_path / "val.h5"), *common, "--teacher", str(teacher), "--student", "convnet_tiny", "--method", "x",
            "--ipc", "4", "--seed", "0", "--epochs", "1", "--steps", "1000000", "--batch-size", "4", "--lr", "0",
            "--weight-decay", "0.01", "--mix", "cutmix", "--temperature", "0", "--schedule", "authors", "--precision",
            "auto", "--min-steps", "0", "--builder", "timm", "--compile", "never", "--device", "cpu", "--out",
            str(tmp_path / "ev.json")]


def _children(proc):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _wait_for(cond, seconds=30):
    end = time.time() + seconds
    while not cond() and time.time() < end:
        time.sleep(0.05)
    return cond()


def test_a_killed_client_takes_its_job_with_it(server, tmp_path):
    """Snakemake cancelling a job kills the client; the server then kills the job's child. A child killed by a
    signal kills its client with the same signal (the exit status Snakemake sees)."""
    env, proc = server
    cmd = _blocking_job(dict(env, OMP_NUM_THREADS="1"), tmp_path)
    for killed in ("client", "job"):
        client = subprocess.Popen([sys.executable, "-m", "d3hr", *cmd], env=dict(env, OMP_NUM_THREADS="1"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _wait_for(lambda: len(_children(proc)) == 1)
        job = _children(proc)[0]
        time.sleep(1.0)
        assert client.poll() is None and Path(f"/proc/{job}").exists()  # both still running: the job blocks
        os.kill(client.pid if killed == "client" else job, signal.SIGKILL)
        rc = client.wait(timeout=30)
        assert _wait_for(lambda: not Path(f"/proc/{job}").exists()), killed
        assert rc == -signal.SIGKILL, killed
    assert proc.poll() is None and d3hr(env, "--version").returncode == 0  # the server serves on
    assert not (tmp_path / "ev.json").exists()


def test_the_server_exits_with_its_parent(tmp_path):
    sock = tmp_path / "s"
    parent = subprocess.Popen(["sleep", "30"])
    srv = subprocess.Popen([sys.executable, "-m", "d3hr.jobserver", "serve", str(sock), "--parent", str(parent.pid)],
                           env=dict(os.environ, PYTHONPATH=_pythonpath()))
    parent.kill()
    parent.wait()
    assert srv.wait(timeout=60) == 0 and not sock.exists()


def _without_times(path):
    r = json.loads(Path(path).read_text())
    return {k: v for k, v in r.items() if k != "train_seconds"}


def test_jobs_of_a_run_use_the_server_and_give_the_same_outputs(tiny_run, tmp_path):
    """The tiny run's jobs ran in the server; rerunning its decode jobs each as a process of their own
    (`job_server: false`) writes the same bytes; the cost table takes a served job's memory from its log."""
    wd = copy_run(tiny_run[0], tmp_path / "wf")
    logs = [p for p in (wd / "logs").rglob("*.log") if "[d3hr]" in p.read_text()]
    assert logs and all("ran in the job server" in p.read_text() for p in logs)
    server_log = (wd / ".snakemake/d3hr-jobserver.log").read_text()
    assert "Traceback" not in server_log and "not held" not in server_log
    # the server held the pipeline's models, loaded once; the decode job took them from memory
    assert server_log.count("pipeline/transformer (") == 1
    assert "pipeline/transformer from the job server's memory" in (wd / "logs/tiny/decode/d3hr/ipc1/cat.log").read_text()
    images = sorted((wd / "results/tiny/images/d3hr/ipc1/cat").glob("*.png"))
    result = wd / "results/tiny/eval/d3hr/ipc1/convnet_tiny-seed0.json"
    before = {p: p.read_bytes() for p in images}, _without_times(result)
    snakemake(wd, "--cores", "2", "-f", "results/tiny/images/d3hr/ipc1/cat", str(result.relative_to(wd)),
              "--config", "job_server=False")
    for log in (wd / "logs/tiny/decode/d3hr/ipc1/cat.log", wd / "logs/tiny/eval/d3hr/ipc1/convnet_tiny-seed0.log"):
        assert "done in" in log.read_text() and "job server" not in log.read_text()
    assert ({p: p.read_bytes() for p in images}, _without_times(result)) == before
    costs = (wd / "results/tiny/tables/costs.md").read_text()
    rss = [float(r.split("|")[6].replace(",", "")) for r in costs.splitlines() if r.startswith("| evaluate")]
    assert rss and min(rss) > 100  # the child's peak RSS (torch loaded), not the client's few MB


def test_the_server_imports_leave_cuda_usable_in_its_forks():
    """torch marks a fork as unable to use CUDA once the parent has queried the devices (diffusers does so on import,
    also on a machine without a GPU); the server's imports must not, and the check that finds it must work."""
    code = ("from d3hr.jobserver import preload, _forks_can_use_cuda; preload(); ok = _forks_can_use_cuda(); "
            "import torch; torch.cuda.is_available(); print(ok, _forks_can_use_cuda())")
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=_pythonpath()),
                       capture_output=True, text=True)
    assert p.stdout.split() == ["True", "False"], p.stderr[-2000:]


def test_the_server_holds_a_pipelines_models_and_a_job_takes_them_once(tmp_path):
    """cache_models loads a named pipeline's VAE and DiT once, again when their files change, and leaves forks able
    to use CUDA; in a job, from_pretrained hands each held model out once, cast to the asked dtype, equal to a load
    from disk (parameters and buffers, dtypes included), and reads the files for any other call."""
    import shutil

    shutil.copytree(REPO / ".test/inputs/pipeline", tmp_path / "pipe")
    code = f"""
import os, torch
from d3hr import jobserver, patches
jobserver.preload()  # as the server does: imports diffusers while the CUDA query is held off
from diffusers import DiTTransformer2DModel
req = {{"argv": ["encode", "--pipeline", "pipe", "--out", "x.h5"], "cwd": {str(tmp_path)!r}}}
jobserver.cache_models(req)
held = dict(jobserver._MODELS)
jobserver.cache_models(req)
same = all(jobserver._MODELS[k][1] is held[k][1] for k in held)
f = next((p for p in os.scandir({str(tmp_path / "pipe" / "vae")!r}) if p.name.endswith(".safetensors")))
os.utime(f.path, ns=(1, 1))
jobserver.cache_models(req)
vae_new = jobserver._MODELS[({str(tmp_path / "pipe")!r}, "vae")][1] is not held[({str(tmp_path / "pipe")!r}, "vae")][1]
dit_same = jobserver._MODELS[({str(tmp_path / "pipe")!r}, "transformer")][1] is held[({str(tmp_path / "pipe")!r}, "transformer")][1]
forks_ok = jobserver._forks_can_use_cuda()
disk = DiTTransformer2DModel.from_pretrained({str(tmp_path / "pipe")!r}, subfolder="transformer", torch_dtype=torch.bfloat16)
patches.serve_pretrained({{k: m for k, (_, m) in jobserver._MODELS.items()}})
got = DiTTransformer2DModel.from_pretrained({str(tmp_path / "pipe")!r}, subfolder="transformer", local_files_only=True,
                                           torch_dtype=torch.bfloat16)
# every parameter and buffer, the non-persistent ones too (pos_embed: float32 under from_pretrained's torch_dtype)
pairs = [*zip(got.named_parameters(), disk.named_parameters()), *zip(got.named_buffers(), disk.named_buffers())]
equal = got.dtype == torch.bfloat16 and all(na == nb and a.dtype == b.dtype and torch.equal(a, b) for (na, a), (nb, b) in pairs)
again = DiTTransformer2DModel.from_pretrained({str(tmp_path / "pipe")!r}, subfolder="transformer", local_files_only=True,
                                             torch_dtype=torch.float32)
print(len(held), same, vae_new, dit_same, forks_ok, got is jobserver._MODELS[({str(tmp_path / "pipe")!r}, "transformer")][1],
      equal, again is got, again.dtype)
"""
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=_pythonpath()), cwd=tmp_path,
                       capture_output=True, text=True)
    *loads, result = p.stdout.splitlines()  # the server's log lines (two loads, one reload), then the result
    assert [line.rsplit("/", 1)[-1].split()[0] for line in loads] == ["vae", "transformer", "vae"], p.stdout
    assert result.split() == ["2", "True", "True", "True", "True", "True", "True", "False", "torch.float32"], (
        p.stdout + p.stderr[-3000:])
    assert "from the job server's memory" in p.stderr and p.stderr.count("from the job server's memory") == 1
