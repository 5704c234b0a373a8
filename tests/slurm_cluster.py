"""A one-node SLURM cluster on localhost for the tests: Debian's slurm-wlm and munge, started here and stopped after.

`start()` returns None when the cluster is up, else the reason it could not start (the test skips with it);
`stop()` stops it and removes its configuration, also after a failed start.
The configuration goes to /etc/slurm/slurm.conf, where job steps look for it (the SLURM executor's job step drops
SLURM_CONF from the environment); an existing configuration that these tests did not write is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

MARK = "# d3hr test cluster: written by tests/slurm_cluster.py"
ETC = Path("/etc/slurm")
STATE = Path("/var/tmp/d3hr-slurm")
NEEDED = ("slurmctld", "slurmd", "munged", "munge", "sbatch", "squeue", "sinfo", "scontrol")


def _run(*cmd, timeout=30, **kw):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)


def conf_text(cpus: int, mem_mb: int) -> str:
    return f"""{MARK}
ClusterName=d3hr
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={STATE}/state
SlurmdSpoolDir={STATE}/spool
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={STATE}/slurmctld.log
SlurmdLogFile={STATE}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost CPUs={cpus} RealMemory={mem_mb} Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _stop_daemons():
    for name in ("slurmd", "slurmctld"):
        pid_file = STATE / f"{name}.pid"
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
    time.sleep(1)


def _munge_ok() -> bool:
    try:
        enc = _run("munge", "-n")
        return enc.returncode == 0 and _run("unmunge", input=enc.stdout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start(cpus: int | None = None) -> str | None:
    missing = [c for c in NEEDED if shutil.which(c) is None]
    if missing:
        return f"SLURM is not installed here (missing {', '.join(missing)}); `make test` installs slurm-wlm and munge"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs; the tests are not running as root"
    conf = ETC / "slurm.conf"
    if conf.is_file() and MARK not in conf.read_text():
        return f"{conf} exists and was not written by these tests: not replacing a real cluster's configuration"
    _stop_daemons()
    for d in ("state", "spool"):
        shutil.rmtree(STATE / d, ignore_errors=True)
        (STATE / d).mkdir(parents=True)
    gpus = STATE / "gpus"
    gpus.mkdir(exist_ok=True)
    for i in range(4):  # device files for the gpu GRES: lets jobs ask for --gpus=1 as on a GPU cluster
        (gpus / f"gpu{i}").touch()
    ETC.mkdir(parents=True, exist_ok=True)
    # more CPUs than the machine has (config_overrides): several 2-thread jobs at once, as on a real node
    cpus = cpus or max(16, os.cpu_count() or 2)
    mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    conf.write_text(conf_text(cpus, mem))
    (ETC / "gres.conf").write_text(f"{MARK}\nAutoDetect=off\nNodeName=localhost Name=gpu File={gpus}/gpu[0-3]\n")
    if not _munge_ok():
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        if not Path("/etc/munge/munge.key").is_file():
            _run("mungekey", "--create", "--keyfile=/etc/munge/munge.key")
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        p = _run("runuser", "-u", "munge", "--", "munged")
        if p.returncode != 0 or not _munge_ok():
            return f"munged could not start: {p.stderr.strip() or p.stdout.strip()}"
    for daemon in ("slurmctld", "slurmd"):
        p = _run(daemon)
        if p.returncode != 0:
            return f"{daemon} could not start: {p.stderr.strip()} {_tail(STATE / f'{daemon}.log')}"
        time.sleep(1.5)
    deadline = time.time() + 40
    state = ""
    while time.time() < deadline:
        state = _run("sinfo", "-h", "-o", "%T").stdout.strip()
        if state in ("idle", "mixed", "allocated"):
            return None
        if state.startswith(("drain", "inval", "down")):
            _run("scontrol", "update", "nodename=localhost", "state=resume")
        time.sleep(1)
    return f"the SLURM node did not become idle (state {state!r}): {_tail(STATE / 'slurmctld.log')} {_tail(STATE / 'slurmd.log')}"


def stop():
    """Stop the daemons and remove the configuration these tests wrote: a slurm.conf naming a controller that is
    down makes every later `scontrol` (which the SLURM executor plugin runs whenever Snakemake starts) wait 9 s."""
    _stop_daemons()
    for f in (ETC / "slurm.conf", ETC / "gres.conf"):
        if f.is_file() and MARK in f.read_text():
            f.unlink()


def _tail(path, n=5) -> str:
    try:
        return " | ".join(Path(path).read_text().splitlines()[-n:])
    except OSError:
        return ""


def job_info(jobid: str) -> str:
    return _run("scontrol", "show", "job", str(jobid)).stdout
