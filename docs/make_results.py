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


def headline(acc: pd.DataFrame) -> str:
    """D3HR minus each baseline at each IPC (final-step top-1 of the soft-label students, points), with the seeds'
    spread: a difference below the larger of the two standard deviations is not resolved by these seeds."""
    acc = acc[~acc["hard_label"].astype(bool)] if "hard_label" in acc else acc
    g = acc.groupby(["method", "ipc"])["top1"].agg(["mean", "std"]) * 100
    ipcs = [i for i in ("1", "10", "50") if ("d3hr", i) in g.index]
    lines = ["| D3HR minus (points) | " + " | ".join(f"IPC {i}" for i in ipcs) + " |", "|---|" + "---|" * len(ipcs)]
    resolved = 0
    for m in ("random_real", "kmeans", "dit_noise", "d3hr_nogroup"):
        cells = []
        for i in ipcs:
            if (m, i) not in g.index:
                cells.append("")
                continue
            d, sd = g.loc[("d3hr", i), "mean"] - g.loc[(m, i), "mean"], max(g.loc[("d3hr", i), "std"], g.loc[(m, i), "std"])
            resolved += abs(d) >= sd
            cells.append(f"{d:+.1f} (std {sd:.1f})" + ("" if abs(d) >= sd else ", not resolved"))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"{resolved} of these {len(ipcs) * 4} differences exceed the larger seed std of the two sets."]
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    q = json.loads((R / "models" / "quality.json").read_text())
    ev = sorted((B / "eval").rglob("*.tsv"))
    main_ev = [f for f in ev if "variant_" not in str(f) and "-hard-" not in f.name
               and "-noaug-" not in f.name]  # make run's soft-label students
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
                      ("metric_correlation", "tables/metric_correlation.md"), ("label_robust", "tables/label_robust.md"),
                      ("aug_robust", "tables/aug_robust.md"),
                      ("sanity", "tables/sanity.md")):
        if (R / rel).exists():  # a run still in progress has no tables yet
            out[name] = (R / rel).read_text().strip()
    if "accuracy" in out:  # the README shows the headline table: top-1 at the end of training
        out["accuracy_final"] = out["accuracy"].split("\n\n")[0]
    if (R / "tables" / "accuracy.csv").exists():
        out["headline"] = headline(pd.read_csv(R / "tables" / "accuracy.csv", dtype={"ipc": str}))
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
    if (R / "tables" / "ablation.csv").exists():
        out["findings"] = findings(piv, pd.read_csv(R / "tables" / "ablation.csv"))
    return out


def findings(recognised: pd.DataFrame, ablation: pd.DataFrame) -> str:
    """The README's sentences on the teacher's recognition of the generative sets (tables/teacher_check.csv) and on
    the ablation variants against D3HR (tables/ablation.csv), with their numbers read from those files."""
    pct = lambda m: ", ".join(f"{100 * recognised.loc[m, i]:.0f}% at IPC {i}" for i in recognised.columns if i != "1")
    gen = [m for m in ("dit_noise", "kmeans", "d3hr_nogroup") if m in recognised.index]
    text = (f"The teacher recognises D3HR's images as their class ({pct('d3hr')}) against "
            + "; ".join(f"{m} {pct(m)}" for m in gen) + " (`tables/teacher_check.csv`).")
    d = ablation[ablation.method == "d3hr"]
    parts = []
    for r in ablation[ablation.method.astype(str).str.startswith("variant_")].itertuples():
        base = d[(d.ipc == r.ipc) & (d.student == r.student)]
        if len(base):
            b = base.iloc[0]
            sd = max(b["std"], r.std)
            parts.append(f"{r.method.removeprefix('variant_')} at IPC {r.ipc}: {r.mean - b['mean']:+.1f} "
                         f"({'beyond' if abs(r.mean - b['mean']) > sd else 'within'} the larger seed std, {sd:.1f})")
    if parts:
        text += " The ablation variants against D3HR's students (`tables/ablation.csv`): " + "; ".join(parts) + "."
    return text


OFFCLASS = ROOT / "docs" / "offclass"  # the tables of the off-class run (config/offclass.yaml), copied by --offclass


def offclass_verdict(ablation: pd.DataFrame, diagnostics: pd.DataFrame, teacher_min: float = 0.9) -> str:
    """The off-class study's result: for D3HR and each variant, the teacher's recognition of its images (tables/
    diagnostics.csv, all classes) and its students against random real images (tables/ablation.csv), at each IPC. The
    chosen variant is the one whose images the teacher recognises best, averaged over the IPCs: a choice made without
    the validation split (the teacher's top-1 on generated images reads no validation image); its students are then
    reported on val."""
    allc = diagnostics[diagnostics.cls == "all classes"].iloc[0]
    ipcs = sorted(int(i) for i in ablation.ipc.unique())
    sets = ["d3hr"] + [m for m in ablation.method.unique() if str(m).startswith("variant_")]
    rows, rec_mean = [], {}
    for m in sets:
        recs = [allc.get(f"top1:{m}@ipc{i}") for i in ipcs]
        rec_mean[m] = float(pd.Series(recs, dtype=float).mean())
        cells = []
        for i, r in zip(ipcs, recs):
            a = ablation[(ablation.method == m) & (ablation.ipc == i)]
            if a.empty:
                cells += [f"{100 * r:.0f}%" if pd.notna(r) else "", ""]
                continue
            a = a.iloc[0]
            cells += [f"{100 * r:.0f}%" if pd.notna(r) else "",
                      f"{a['mean']:.1f} ± {a['std']:.1f} ({a.vs_random_real:+.1f}, {a.vs_random_real_2std})"]
        rows.append((m, cells))
    best = max((m for m in sets if m != "d3hr"), key=lambda m: rec_mean[m])
    head = ["set"] + [h for i in ipcs for h in (f"recognised, IPC {i}", f"top-1 IPC {i} (minus random real, 2 std)")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([m.removeprefix("variant_") + (" **(chosen)**" if m == best else "")] + c) + " |"
              for m, c in rows]
    b = ablation[ablation.method == best]
    rec_ok = all(allc.get(f"top1:{best}@ipc{i}", 0) >= teacher_min for i in ipcs)
    beats = all((b[b.ipc == i].vs_random_real_2std == "above").any() for i in ipcs)
    n = int(ablation[ablation.method == best]["count"].min())
    lines += ["", f"Chosen without the validation split (the highest recognition averaged over IPC "
              f"{', '.join(map(str, ipcs))}): **{best.removeprefix('variant_')}**; recognised at >= {100 * teacher_min:.0f}% "
              f"at every IPC: **{'yes' if rec_ok else 'no'}**; its students ({n} seeds) above random real images by more "
              f"than 2 seed std at every IPC: **{'yes' if beats else 'no'}**."]
    return "\n".join(lines)


def offclass_blocks() -> dict[str, str]:
    """The off-class study's blocks, from the copied tables of its run (docs/offclass/)."""
    if not (OFFCLASS / "ablation.csv").exists():
        return {}
    ablation = pd.read_csv(OFFCLASS / "ablation.csv")
    diagnostics = pd.read_csv(OFFCLASS / "diagnostics.csv")
    return {"offclass_verdict": offclass_verdict(ablation, diagnostics),
            "offclass_diagnostics": (OFFCLASS / "diagnostics.md").read_text().strip(),
            "offclass_ablation": (OFFCLASS / "ablation.md").read_text().strip()}


def stage_bytes() -> str:
    """ImageNet's bytes per stage (bench/stage_bytes.py), for docs/scaling.md."""
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "bench" / "stage_bytes.py"), "--configfile", str(ROOT / "config" / "imagenet.yaml"),
           "--imagenet"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def imagenet_cost() -> str:
    """The ImageNet cost table (bench/cost_model.py, from bench/rates.jsonl), for the README."""
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "bench" / "cost_model.py"), "--configfile", str(ROOT / "config" / "imagenet.yaml"),
           "--imagenet"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def teacher_recipe() -> str:
    """The teacher-recipe bench's table (bench/teacher_recipe.py --report, from bench/teacher_recipe.jsonl)."""
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "bench" / "teacher_recipe.py"), "--out", str(ROOT / "bench" / "teacher_recipe.jsonl"),
           "--report"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def bench_report(name: str) -> str:
    """What `python bench/{name}.py ... | tee bench/{name}.txt` printed (the command is in the docs beside the block)."""
    f = ROOT / "bench" / f"{name}.txt"
    return f"```\n{f.read_text().strip()}\n```" if f.exists() else f"(not yet measured: bench/{name}.txt is missing)"


def main():
    import argparse
    import shutil

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--offclass", metavar="RESULTS", help="the results/animal_mnist folder of a finished run of "
                    "config/offclass.yaml: its tables are copied into docs/offclass/ and fill the off-class blocks")
    ap.add_argument("--only-offclass", action="store_true", help="fill only the off-class blocks")
    a = ap.parse_args()
    if a.offclass:
        OFFCLASS.mkdir(exist_ok=True)
        for name in ("ablation.csv", "ablation.md", "diagnostics.csv", "diagnostics.md", "teacher_check.csv",
                     "accuracy.csv", "accuracy.md", "sanity.md"):
            shutil.copyfile(Path(a.offclass) / "tables" / name, OFFCLASS / name)
    if a.only_offclass:
        fill(offclass_blocks())
        return
    run = (R / "models" / "quality.json").exists()
    if not run:  # the bench blocks alone; the run's blocks stay as they are
        print(f"[make_results] no finished run under {R}: only the blocks made from bench/ are filled")
    got = (blocks() if run else {}) | {"stage_bytes": stage_bytes(), "imagenet_cost": imagenet_cost(),
                                       "teacher_recipe": teacher_recipe()}
    got |= {f"{name}_report": bench_report(name) for name in ("dag_imagenet", "model_cache", "slurm_groups", "gpu_all",
                                                              "gpu_stages_cpu", "eval_throughput_cpu", "image_subset")}
    fill(got | offclass_blocks())


def fill(got: dict[str, str]):
    for doc in (ROOT / "docs" / "results.md", ROOT / "README.md", ROOT / "docs" / "scaling.md",
                ROOT / "docs" / "benchmarks.md"):
        text = doc.read_text()
        for name, block in got.items():
            text = re.sub(rf"(<!-- {name} -->\n)(?:.*?\n)?(<!-- /{name} -->)",
                          lambda m: m.group(1) + block + "\n" + m.group(2), text, flags=re.S)
        doc.write_text(text)


if __name__ == "__main__":
    main()
