"""GPU placement: one lease per device, never two jobs on one device, released when a job dies (simulated)."""

import os
import signal
import subprocess
import sys
import time


from d3hr.device import lease, pick_device, release_all, visible_device_ids

HOLDER = """
import sys, time
from d3hr.device import lease
i = lease(["0", "1", "2", "3"], sys.argv[1], poll=0.05)
t0 = time.time()
time.sleep(float(sys.argv[2]))
print(i, t0, time.time(), flush=True)
"""


def test_six_jobs_on_four_devices_never_share(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "1.0"], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    rows = [tuple(map(float, p.communicate(timeout=60)[0].split())) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    by_dev = {}
    for dev, start, end in rows:
        by_dev.setdefault(int(dev), []).append((start, end))
    assert set(by_dev) == {0, 1, 2, 3}  # all four devices used
    for spans in by_dev.values():  # no overlap on any device
        spans.sort()
        assert all(a_end <= b_start + 0.01 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_lease_is_released_when_the_job_is_killed(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", HOLDER.replace('["0", "1", "2", "3"]', '["0"]'), str(tmp_path), "60"])
    deadline = time.time() + 30
    while True:  # wait until the child holds the lock
        assert time.time() < deadline, "the child never took the lease"
        try:
            lease(["0"], tmp_path, poll=0.05, timeout=0.1)
            release_all()  # the child has not started yet
            time.sleep(0.1)
        except TimeoutError:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert lease(["0"], tmp_path, poll=0.05, timeout=5) == 0
    release_all()


def test_visible_devices_and_cpu_fallback(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_device_ids(2) == ["2", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_device_ids(3) == ["0", "1", "2"]
    import torch

    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        assert "running on the CPU" in capsys.readouterr().err
