"""The measured rates the cost model reads (bench/rates.jsonl): one JSON line per measurement, appended by the
benchmarks' `--rates-out`; `bench/cost_model.py` takes the newest line of each (stage, device kind, arch, steps)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

RATES = Path(__file__).resolve().parent / "rates.jsonl"


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def append_rate(path, stage: str, rate: float, unit: str, device: str, source: str, **fields):
    """Append one measurement: `rate` in `unit` of `stage` on `device`, by the command `source`."""
    import torch

    row = {"stage": stage, "rate": round(float(rate), 4), "unit": unit, "device": device, "kind": "measured",
           "date": datetime.date.today().isoformat(), "torch": torch.__version__, "source": source, **fields}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def load_rates(path=RATES) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
