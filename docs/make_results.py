"""Fill the data blocks of docs/results.md and README.md from a finished run of the embedded default
(`make readme-figures`, or `python docs/make_results.py`).

Every number in the generated blocks is read from a file that a rule wrote; the prose around them is in
docs/results.md between the markers and is kept as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from d3hr.methods import ordered

ROOT = Path(__file__).resolve().parent.parent
R, B = ROOT / "results" / "animal_mnist", ROOT / "benchmarks" / "animal_mnist"


def bench_s(path) -> float:
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def blocks() -> dict[str, str]:
    q = json.loads((R / "models" / "quality.json").read_text())
    ev = sorted((B / "eval").rglob("*.tsv"))
    main_ev = [f for f in ev if "variant_" not in str(f) and "-hard-" not in f.name]  # make run's soft-label students
    ev_s = sum(bench_s(f) for f in main_ev)
    out = {
        "models": "\n".join([
            "| quantity (`models/quality.json`, `benchmarks/`) | value |", "|---|---|",
            f"| VAE reconstruction PSNR on val | {q['vae_val_psnr_db']:.2f} dB |",
            f"| teacher (`{q['teacher_arch']}`) top-1 on val | {100 * q['teacher_val_top1']:.1f}% |",
            f"| teacher top-1 on DiT samples from noise ({q['dit_samples_per_class']} per class, CFG "
            f"{q['dit_sampling']['guidance']}, {q['dit_sampling']['num_steps']} DDIM steps) | "
            f"{100 * q['teacher_top1_on_dit_samples']:.1f}% |",
            f"| `train_ldm` wall time (VAE {q['vae_seconds']:.0f} s + DiT {q['dit_seconds']:.0f} s) | "
            f"{bench_s(B / 'train_ldm.tsv'):.0f} s |",
            f"| `train_teacher` wall time | {bench_s(B / 'train_teacher.tsv'):.0f} s |",
        ]),
        "eval_time": f"{len(main_ev)} evaluation jobs took {ev_s:.0f} s together (sum of their `benchmark:` wall "
                     f"times), {ev_s / 2 / 60:.1f} min on 2 cores",
    }
    for name, rel in (("accuracy", "tables/accuracy.md"), ("costs", "tables/costs.md"),
                      ("representativeness", "tables/representativeness.md"),
                      ("metric_correlation", "tables/metric_correlation.md"), ("label_robust", "tables/label_robust.md")):
        if (R / rel).exists():  # a run still in progress has no tables yet
            out[name] = (R / rel).read_text().strip()
    if (R / "tables" / "costs.csv").exists():
        total = pd.read_csv(R / "tables" / "costs.csv").set_index("stage").loc["all stages", "total_s"]
        out["job_seconds"] = f"The jobs of this run add up to {total:,.0f} s"
    if not (R / "tables" / "teacher_check.csv").exists():
        return out
    tc = pd.read_csv(R / "tables" / "teacher_check.csv", dtype={"ipc": str})
    col = "top1" if "top1" in tc.columns else [c for c in tc.columns if "top1" in c][0]
    piv = tc.pivot_table(index="method", columns="ipc", values=col, aggfunc="first")
    piv = piv.loc[ordered(piv.index)]
    out["teacher_check"] = "| images | " + " | ".join(f"IPC {c}" for c in piv.columns) + " |\n|---|" + \
        "---|" * len(piv.columns) + "\n" + "\n".join(
            f"| {m} | " + " | ".join(f"{100 * v:.1f}%" for v in piv.loc[m]) + " |" for m in piv.index)
    if (R / "tables" / "ablation.md").exists():
        out["ablation"] = (R / "tables" / "ablation.md").read_text().strip()
    return out


def main():
    got = blocks()
    for doc in (ROOT / "docs" / "results.md", ROOT / "README.md"):
        text = doc.read_text()
        for name, block in got.items():
            text = re.sub(rf"(<!-- {name} -->\n)(?:.*?\n)?(<!-- /{name} -->)",
                          lambda m: m.group(1) + block + "\n" + m.group(2), text, flags=re.S)
        doc.write_text(text)


if __name__ == "__main__":
    main()
