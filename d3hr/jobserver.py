"""A job server: `python -m d3hr ...` commands run as children forked from one process that has already imported
torch, diffusers, timm, numpy, pandas and matplotlib (docs/benchmarks.md, "Where a model job's seconds go").

Most of a run's jobs are small per-class jobs, and each used to start a Python process that spent about 7 s of CPU
(2 cores) on imports before a second or two of work. With the server, `python -m d3hr <stage> ...` (the client, in
`d3hr/__main__.py`) connects to the server's Unix socket, hands over its command line, working directory,
environment, `sys.path` and its stdin/stdout/stderr file descriptors, and waits. The server forks; the child drops
every `d3hr` module it inherited (so an edited module is read afresh, as in a new process), takes the client's
environment, thread counts and descriptors, and runs `d3hr.cli.main` exactly as the client would have. The client
exits with the child's exit status and writes the child's CPU time and peak memory into the job's log.

- Snakemake starts one server per run (`onstart` in rules/common.smk, local execution only; `job_server: false` in
  the config turns it off) and stops it at the end; the server also exits when Snakemake's process is gone.
- A client that cannot reach a server, or reaches one of another Python environment, runs the command itself.
- A client that is killed (Snakemake cancelling a job) closes its socket; the server then kills the child's process
  group (SIGTERM, SIGKILL after 10 s), so no orphan writes outputs.
- The server initialises no CUDA (its imports' device query is held off: torch would mark every later fork as
  unable to use CUDA): each child picks and initialises its own device after the fork.
- What this takes of other libraries' private internals (torch's device query, diffusers' cached device type,
  atexit's handlers) is in d3hr/patches.py, one function each; this module patches nothing itself.
- A child dies with the server (Linux parent-death signal); the server reaps every child.
- Models held in memory: the first job that names a pipeline (`--pipeline DIR`) makes the server load that
  pipeline's VAE and DiT in float32 on the CPU (`cache_models`; again when their files change). Every later job
  forks with them and takes them from memory, cast to its dtype, instead of reading them from disk
  (`patches.serve_pretrained`): DiT-XL/2 is 2.7 GB, about 3 s of a job that decodes one class at IPC 10 in about
  half a second of GPU time (docs/benchmarks.md, "Models held by the job server"). The weights are those the job
  would have read, so its outputs are the same.
- A cluster job of two or more GPU jobs (a SLURM group job, its members one after another) starts a server of its own
  when its Snakemake reads the workflow (rules/common.smk): the group pays the imports and the model load once.

    python -m d3hr.jobserver serve SOCKET [--parent PID]     # what onstart runs
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time

ENV = "D3HR_JOB_SERVER"  # the socket's path, set for the jobs of a run that has a server
_LEN = struct.Struct("!Q")
# environment variables Snakemake sets per job for the thread pools that are loaded once in the server
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ---------------------------------------------------------------------------------------------------- the client


def _recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("job server closed the connection")
        buf += chunk
    return buf


def run_via_server(argv: list[str]) -> int | None:
    """Run `python -m d3hr argv` in the job server named by $D3HR_JOB_SERVER; None when there is no usable server
    (the caller then runs the command itself)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return None
    msg = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
                      "python": _interpreter(), "umask": _umask()}).encode()
    with s:
        try:
            socket.send_fds(s, [_LEN.pack(len(msg))], [0, 1, 2])
            s.sendall(msg)
            first = _recv_exact(s, _LEN.size)
        except (OSError, ConnectionError):  # the server stopped before the job ended (the job died with it)
            print("[d3hr] the job server stopped; running the job here", file=sys.stderr)
            return None
        try:
            reply = json.loads(_recv_exact(s, _LEN.unpack(first)[0]))
        except (OSError, ConnectionError, ValueError):
            print("[d3hr] the job server stopped during this job", file=sys.stderr)
            return 1
    if reply.get("refused"):
        return None
    print(f"[d3hr] ran in the job server (pid {reply['pid']}): {reply['cpu_s']:.1f} s CPU, "
          f"peak RSS {reply['maxrss_mb']:.0f} MB", file=sys.stderr)
    rc = int(reply["rc"])
    if rc < 0:  # the job died of signal -rc: so does this process, as its exit status shows
        sys.stderr.flush()
        try:
            signal.signal(-rc, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: no handler to reset
            pass
        os.kill(os.getpid(), -rc)
    return rc


def _interpreter() -> list:
    """What identifies this Python environment: the interpreter file (device, inode), prefix and version."""
    st = os.stat(os.path.realpath(sys.executable))
    return [st.st_dev, st.st_ino, sys.prefix, *sys.version_info[:2]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------------- the server


def start_server(enabled: bool = True, log_dir: str = ".snakemake"):
    """Start a server for the jobs this process will start (Snakemake's `onstart`): they inherit its socket in
    $D3HR_JOB_SERVER. None when not `enabled` (a cluster run, `job_server: false`) or when an enclosing run already
    has one. The server exits with this process at the latest."""
    import subprocess
    import tempfile

    if not enabled or os.environ.get(ENV):
        return None
    sock = os.path.join(tempfile.mkdtemp(prefix="d3hr-js-"), "socket")  # short: a socket path has at most 107 bytes
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "d3hr-jobserver.log"), "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "d3hr.jobserver", "serve", sock, "--parent", str(os.getpid())],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    end = time.time() + 30
    while not os.path.exists(sock) and proc.poll() is None and time.time() < end:
        time.sleep(0.01)  # bound within a fraction of a second, before its imports: the first jobs wait for those
    if not os.path.exists(sock):
        proc.kill()
        print(f"[d3hr] the job server did not start (log: {log_dir}/d3hr-jobserver.log); jobs run on their own",
              file=sys.stderr)
        return None
    os.environ[ENV] = sock
    return proc


def stop_server(proc):
    """Stop a server of `start_server` (Snakemake's `onsuccess` / `onerror`)."""
    import subprocess

    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    sock = os.environ.pop(ENV, None)
    if sock and os.path.isdir(os.path.dirname(sock)):
        import shutil

        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)


def preload():
    """Import what the stages import (not d3hr itself), without initialising CUDA or any thread pool.

    One import asks whether CUDA is there (diffusers' `torch_utils` caches its device type), and torch's CUDA query
    poisons every later fork: a child could not use the GPU. While importing, the query answers 0 devices
    (`patches.cuda_query_held_off`); each child makes diffusers ask afresh (`patches.redetect_diffusers_device`)."""
    from d3hr import patches

    with patches.cuda_query_held_off():
        import h5py  # noqa: F401
        import numpy  # noqa: F401
        import PIL.Image  # noqa: F401
        import torch.nn.functional  # noqa: F401
        import tqdm  # noqa: F401

        import diffusers  # noqa: F401
        from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel  # noqa: F401
        import timm  # noqa: F401
        import timm.optim  # noqa: F401
        import scipy.stats  # noqa: F401
        import pandas  # noqa: F401
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        import seaborn  # noqa: F401
        import threadpoolctl  # noqa: F401


HOLD_ENV = "D3HR_HOLD_MODELS"  # "0" in a job's environment: the job loads its models itself (bench/model_cache.py)
_MODELS: dict = {}  # (pipeline dir, subfolder) -> (its files' stamp, the float32 model on the CPU); children inherit it
_COMPONENTS = (("vae", "AutoencoderKL"), ("transformer", "DiTTransformer2DModel"))


def _stamp(folder: str) -> tuple:
    return tuple(sorted((e.name, (st := e.stat()).st_size, st.st_mtime_ns) for e in os.scandir(folder) if e.is_file()))


def cache_models(req: dict):
    """Before forking a job that names a pipeline (`--pipeline DIR`): hold that pipeline's VAE and DiT in memory, in
    float32 on the CPU, loaded once (again when their files change), on one thread (no thread pool is started in the
    server: forks of a process with a running OpenMP pool can hang) and without a CUDA query. A model that does not
    load is left to the job, which reports the error itself."""
    argv = req.get("argv", [])
    if "--pipeline" not in argv[:-1]:
        return
    path = os.path.normpath(os.path.join(req["cwd"], argv[argv.index("--pipeline") + 1]))
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        return
    import diffusers
    import torch

    from d3hr import patches

    for sub, name in _COMPONENTS:
        key, folder = (path, sub), os.path.join(path, sub)
        try:
            stamp = _stamp(folder)
            if key in _MODELS and _MODELS[key][0] == stamp:
                continue
            _MODELS.pop(key, None)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with patches.cuda_query_held_off():
                    model = getattr(diffusers, name).from_pretrained(path, subfolder=sub, local_files_only=True,
                                                                     torch_dtype=torch.float32)
            finally:
                torch.set_num_threads(threads)
            _MODELS[key] = (stamp, model.eval())
            print(f"[d3hr] job server: holds {folder} ({sum(p.numel() for p in model.parameters()):,} parameters)",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - the job loads it itself and reports what is wrong
            print(f"[d3hr] job server: {folder} not held ({type(e).__name__}: {e}); jobs load it themselves",
                  flush=True)


def _forks_can_use_cuda() -> bool:
    """Whether a child forked now could initialise CUDA (torch marks a fork after a CUDA query as bad)."""
    from d3hr.patches import cuda_fork_poisoned

    pid = os.fork()
    if pid == 0:
        os._exit(1 if cuda_fork_poisoned() else 0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _limit_threads(n: int):
    """Limit this process's thread pools to `n` threads, as OMP_NUM_THREADS etc. do for a new process: torch's own and
    every BLAS and OpenMP library the server loaded (numpy's and scipy's OpenBLAS, torch's OpenMP)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def _child(req: dict) -> int:
    """In the forked child (its stdio already the client's): become the client's process and run its command."""
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):  # as in a new process
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
    import tempfile

    from d3hr import patches  # the server's copy (the d3hr modules are dropped below)

    patches.forget_exit_handlers()  # the server's exit handlers are not this job's
    os.chdir(req["cwd"])
    os.umask(req.get("umask", 0o022))
    os.environ.clear()
    os.environ.update(req["env"])
    tempfile.tempdir = None  # from the job's TMPDIR
    sys.path[:] = req["path"]
    sys.argv = [sys.argv[0], *req["argv"]]
    for name in [m for m in sys.modules if m == "d3hr" or m.startswith("d3hr.")]:
        del sys.modules[name]  # a module edited since the server started is read afresh
    patches.redetect_diffusers_device()
    if req["env"].get(HOLD_ENV) != "0":
        patches.serve_pretrained({k: m for k, (_, m) in _MODELS.items()})
    threads = next((req["env"][v] for v in _THREAD_VARS if req["env"].get(v, "").isdigit()), None)
    if threads:
        _limit_threads(int(threads))
    from d3hr.cli import main

    try:
        rc = main(req["argv"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        rc = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 1
    patches.run_exit_handlers()  # as at the end of a process of its own (the caller leaves with os._exit)
    return int(rc or 0)


def _die_with_parent():
    """Linux: this process gets SIGKILL when the server dies (a job must not outlive the server that answers for
    it to Snakemake); exits at once if the server is already gone."""
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _run_child(req, fds, inherited) -> int:
    """The forked child's whole life; every failure is printed into the job's log."""
    rc = 1
    try:
        for f in inherited:  # the server's sockets: the listening one and those of the other running jobs
            f.close()
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        rc = _child(req)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        try:
            import ctypes

            ctypes.CDLL(None).fflush(None)  # C-level output (os._exit skips it)
        except (OSError, AttributeError):
            pass
    return rc


def _send(conn, obj):
    data = json.dumps(obj).encode()
    try:
        conn.sendall(_LEN.pack(len(data)) + data)
    except OSError:
        pass


def _kill_group(pid: int):
    """SIGTERM to the job's process group (the job and what it started), SIGKILL after 10 s; reaps the job."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.time() + wait
        while time.time() < end:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.05)


def serve(path: str, parent: int | None = None):
    """Accept clients on the Unix socket `path` until SIGTERM, or until the process `parent` is gone."""
    import selectors

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    srv.bind(path)
    srv.listen(64)  # bound before the imports: clients that come early wait for them, not run them themselves
    refuse = None  # why every job runs on its own, if it must
    try:
        preload()
    except Exception:
        import traceback

        traceback.print_exc()
        refuse = "the server's imports failed"
    if refuse is None and not _forks_can_use_cuda():
        refuse = "CUDA was queried while importing, so a forked job could not use it"
    if refuse:
        print(f"[d3hr] job server: {refuse}; every job runs on its own", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    wake_r, wake_w = socket.socketpair()  # a child's exit (SIGCHLD) wakes the loop at once
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    children = {}  # pid -> the connection of its client
    while not stop:
        if parent and not _alive(parent):
            break
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is srv:
                _accept(srv, sel, children, wake_w, refuse)
            elif key.fileobj is wake_r:
                wake_r.recv(4096)
            else:  # a client's socket readable: it closed (was killed); kill its child
                conn = key.fileobj
                pid = next(p for p, c in children.items() if c is conn)
                try:
                    gone = not conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    gone = True
                if gone:
                    sel.unregister(conn)
                    _kill_group(pid)
                    children.pop(pid)
                    conn.close()
        while True:  # reap every child that ended (a killed job's too)
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            if pid in children:
                conn = children.pop(pid)
                sel.unregister(conn)
                _send(conn, {"rc": os.waitstatus_to_exitcode(status), "pid": pid, "cpu_s": ru.ru_utime + ru.ru_stime,
                             "maxrss_mb": ru.ru_maxrss / 1024})
                conn.close()
    for pid in list(children):
        _kill_group(pid)
    srv.close()
    if os.path.exists(path):
        os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _accept(srv, sel, children, wake_w, refuse=None):
    """Take one client's job: read its request and descriptors, fork the child that runs it."""
    import selectors

    conn, _ = srv.accept()
    conn.settimeout(10)  # a client that connects and stalls does not hold up the others for long
    fds = []
    try:
        head, fds, _, _ = socket.recv_fds(conn, _LEN.size, 3)
        req = json.loads(_recv_exact(conn, _LEN.unpack(head + _recv_exact(conn, _LEN.size - len(head)))[0]))
    except (OSError, ConnectionError, ValueError, struct.error):
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    conn.settimeout(None)
    if refuse is None and req.get("python") != _interpreter():
        refuse = "another Python environment"  # e.g. a job in its own conda environment or container
    if refuse is None and len(fds) != 3:
        refuse = "no standard streams"
    if refuse:
        _send(conn, {"refused": refuse})
        for fd in fds:
            os.close(fd)
        conn.close()
        return
    if req.get("env", {}).get(HOLD_ENV) != "0":
        cache_models(req)
    pid = os.fork()
    if pid == 0:
        rc = 1
        try:
            signal.set_wakeup_fd(-1)
            os.setpgid(0, 0)  # its own process group: a cancelled job is killed with everything it started
            rc = _run_child(req, fds, [srv, conn, wake_w, *(k.fileobj for k in sel.get_map().values())])
        finally:
            os._exit(rc)
    try:
        os.setpgid(pid, pid)  # also here, so that no kill can come before the child's own call
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    sel.register(conn, selectors.EVENT_READ)


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m d3hr.jobserver", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve jobs on a Unix socket")
    s.add_argument("socket")
    s.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    a = p.parse_args(argv)
    serve(a.socket, a.parent)


if __name__ == "__main__":
    main()
