"""The workflow's tables, as CSV (and Markdown / LaTeX where a person reads them):

    accuracy             tidy CSV (one row per run) and the paper's layout (rows: method; columns: IPC x student;
                         cells: mean +- std over seeds)                                           (docs/method.md §6)
    normality            skewness, kurtosis and normality tests of VAE vs inverted latents       (docs/method.md §3)
    storage              bytes of the Gaussian parameters vs the distilled images
    costs                wall time and peak memory per stage, from the rules' benchmark files
    teacher_check        the teacher's top-1 on each distilled set (no validation data)
    representativeness   MMD, coverage, diversity per method and IPC, and their correlation with accuracy (§7)
    label_robust         hard-label recovery, improvement over random, label-robust score (§7)
    aug_robust           improvement over random with and without augmentation, augmentation-robust score (§7)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import D3HRError
from .h5io import atomic_output, open_h5, read_attrs
from .methods import ordered

COLUMNS = ["method", "ipc", "student", "seed", "hard_label", "augment", "top1", "top5", "top1_best_last", "best_step",
           "steps", "n_train_images", "train_seconds"]


def write_collected(files: list[str], out: str):
    """collect(files) as one CSV file."""
    from .h5io import atomic_output

    with atomic_output(out) as tmp:
        collect(files).to_csv(tmp, index=False)


def write_teacher_check(teacher: str, images: list[str], methods: list[str], ipcs: list[str], classes: list[str],
                        labels: list[int], resolution: int, channels: int, out: str):
    """teacher_check_table of every (method, IPC) set among the folders `images` (.../{method}/ipc{ipc}/{class})."""
    if len(labels) != len(classes):
        raise D3HRError("--labels must have one entry per class")
    sets = {(m, str(i)): [str(Path(d)) for d in images if Path(d).parts[-3:-1] == (m, f"ipc{i}")
                          and Path(d).name in classes] for m in methods for i in ipcs}
    table = teacher_check_table(teacher, sets, labels=dict(zip(classes, labels)), resolution=resolution,
                                channels=channels)
    write_csv(table, out)


def collect(files) -> pd.DataFrame:
    rows = []
    for f in files:
        r = json.loads(Path(f).read_text())
        rows.append({k: r.get(k) for k in COLUMNS})
    return pd.DataFrame(rows, columns=COLUMNS)


def _ipc_key(v):
    return (1, 0) if str(v) == "all" else (0, int(v))


def summary(df: pd.DataFrame, col: str = "top1") -> pd.DataFrame:
    """Mean and std (ddof=1) of `col` in % over seeds, per method x IPC x student."""
    g = df.assign(top1=df[col] * 100).groupby(["method", "ipc", "student"]).top1
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    return out


def _wide(s: pd.DataFrame, fmt) -> pd.DataFrame:
    s = s.assign(cell=[fmt(m, sd, n) for m, sd, n in zip(s["mean"], s["std"], s["n"])])
    w = s.pivot(index="method", columns=["ipc", "student"], values="cell")
    w = w[sorted(w.columns, key=lambda c: (_ipc_key(c[0]), c[1]))]
    order = ordered(w.index)
    return w.loc[order].fillna("")


def _flag(df: pd.DataFrame, col: str, default: bool) -> pd.Series:
    """df[col] as booleans, `default` where the column or a value is missing (a run that predates the column)."""
    if col not in df:
        return pd.Series(default, index=df.index, dtype=bool)
    return df[col].astype("object").fillna(default).astype(bool)


def read_eval_csvs(csvs) -> pd.DataFrame:
    """The collected runs; `hard_label` is False and `augment` True where a file predates the column."""
    df = pd.concat([pd.read_csv(c, dtype={"ipc": str}) for c in csvs], ignore_index=True)
    df["hard_label"] = _flag(df, "hard_label", False)
    df["augment"] = _flag(df, "augment", True)
    return df


def main_protocol(df: pd.DataFrame) -> pd.Series:
    """The runs of the paper's protocol: soft labels, with the evaluation's augmentation (hard-label runs:
    `label_robust`; runs without augmentation: `augmentation_robust`)."""
    return ~_flag(df, "hard_label", False) & _flag(df, "augment", True)


def write_tables(csvs: list[str], out_dir: str):
    """The accuracy tables of the soft-label students with augmentation (the paper's protocol); hard-label runs:
    `label_robust`, runs without augmentation: `augmentation_robust`."""
    df = read_eval_csvs(csvs)
    df = df[main_protocol(df)]
    df = df.sort_values(["method", "ipc", "student", "seed"], key=lambda c: c.map(_ipc_key) if c.name == "ipc" else c)
    out_dir = Path(out_dir)
    s = summary(df)
    md_cell = lambda m, sd, n: f"{m:.1f} ± {sd:.1f}" if n > 1 else f"{m:.1f}"
    tex_cell = lambda m, sd, n: f"${m:.1f}_{{\\pm {sd:.1f}}}$" if n > 1 else f"${m:.1f}$"
    wm, wt = _wide(s, md_cell), _wide(s, tex_cell)
    header = [f"IPC {i} / {st}" for i, st in wm.columns]
    md = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    md += [f"| {m} | " + " | ".join(row) + " |" for m, row in zip(wm.index, wm.values)]
    n_seeds = int(s["n"].max()) if len(s) else 0
    md.append("")
    md.append(f"Top-1 (%) on the real validation split at the end of training, mean ± std over up to {n_seeds} seeds.")
    if df["top1_best_last"].notna().all():
        wb = _wide(summary(df, "top1_best_last"), md_cell)
        md += ["", "| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
        md += [f"| {m} | " + " | ".join(row) + " |" for m, row in zip(wb.index, wb.values)]
        md += ["", "The authors' reported figure: the best top-1 of the last evaluations (after each of the last 9 "
                   "epochs, as the authors' `epoch > 290` of 300; with a step budget, 5 points in the last 10% of the "
                   "steps; it selects on the validation split), mean ± std over seeds."]
    tex = ["\\begin{tabular}{l" + "c" * len(header) + "}", "\\toprule",
           "Method & " + " & ".join(h.replace("_", "\\_") for h in header) + " \\\\", "\\midrule"]
    tex += [m.replace("_", "\\_") + " & " + " & ".join(row) + " \\\\" for m, row in zip(wt.index, wt.values)]
    tex += ["\\bottomrule", "\\end{tabular}"]
    for name, text in (("accuracy.md", "\n".join(md) + "\n"), ("accuracy.tex", "\n".join(tex) + "\n")):
        with atomic_output(out_dir / name) as tmp:
            tmp.write_text(text)
    with atomic_output(out_dir / "accuracy.csv") as tmp:
        df.to_csv(tmp, index=False)
    return df, s


def _write_md_csv(df: pd.DataFrame, md_lines: list[str], csv, md):
    with atomic_output(csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_output(md) as tmp:
        tmp.write_text("\n".join(md_lines) + "\n")


def _md_table(df: pd.DataFrame, fmt: dict) -> list[str]:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt.get(c, str)(r[c]) if pd.notna(r[c]) else "" for c in cols) + " |")
    return lines


def label_robust(df: pd.DataFrame, w: float = 0.5) -> pd.DataFrame:
    """DD-Ranking's label-robust scores per method x IPC x student, paired by seed, as fractions of 1:
    HLR = acc(full, hard) - acc(set, hard); IOR = acc(set, soft) - acc(random_real, soft) at the same IPC;
    alpha = w IOR - (1 - w) HLR; LRS = (e^alpha - e^-1) / (e - e^-1) (in [0, 1]). Mean and std over seeds."""
    key = ["method", "ipc", "student", "seed"]
    soft = df[main_protocol(df)].set_index(key).top1
    hard = df[_flag(df, "hard_label", False) & _flag(df, "augment", True)].set_index(key).top1
    full_hard = hard.xs("full", level="method").droplevel("ipc") if "full" in hard.index.get_level_values(0) else None
    rows = []
    for (method, ipc, student, seed), acc_soft in soft.items():
        if method in ("full",) or (method, ipc, student, seed) not in hard.index:
            continue
        rnd = soft.get(("random_real", ipc, student, seed))
        fh = full_hard.get((student, seed)) if full_hard is not None else None
        hlr = fh - hard[(method, ipc, student, seed)] if fh is not None else float("nan")
        ior = acc_soft - rnd if rnd is not None else float("nan")
        alpha = w * ior - (1 - w) * hlr
        lrs = (np.exp(alpha) - np.exp(-1)) / (np.exp(1) - np.exp(-1))
        rows.append({"method": method, "ipc": ipc, "student": student, "seed": seed, "soft": acc_soft,
                     "hard": hard[(method, ipc, student, seed)], "hlr": hlr, "ior": ior, "lrs": lrs})
    r = pd.DataFrame(rows, columns=["method", "ipc", "student", "seed", "soft", "hard", "hlr", "ior", "lrs"])
    g = r.groupby(["method", "ipc", "student"])[["soft", "hard", "hlr", "ior", "lrs"]]
    out = g.mean().join(g.std(ddof=1).add_suffix("_std")).join(g.size().rename("n")).reset_index()
    rank = {m: i for i, m in enumerate(ordered(out.method.unique()))}
    return out.sort_values(["ipc", "method"], key=lambda c: c.map(_ipc_key) if c.name == "ipc" else c.map(rank))


def write_label_robust(csvs: list[str], csv: str, md: str, w: float):
    s = label_robust(read_eval_csvs(csvs), w)
    view = s.assign(**{c: [f"{100 * m:.1f} ± {100 * d:.1f}" if n > 1 else f"{100 * m:.1f}"
                           for m, d, n in zip(s[c], s[f"{c}_std"], s["n"])] for c in ("soft", "hard", "hlr", "ior")},
                    lrs=[f"{m:.3f}" for m in s.lrs])[["method", "ipc", "student", "soft", "hard", "hlr", "ior", "lrs"]]
    lines = _md_table(view, {}) + ["", f"Top-1 (%) with soft labels (the teacher's) and hard labels; HLR = full (hard) - set "
                                      f"(hard), lower is better; IOR = set (soft) - random_real (soft), higher is better; "
                                      f"LRS = (e^a - e^-1) / (e - e^-1), a = {w} IOR - {1 - w} HLR (accuracies as "
                                      f"fractions), in [0, 1], higher is better (DD-Ranking). Mean ± std over seeds."]
    _write_md_csv(s, lines, csv, md)
    return s


def augmentation_robust(df: pd.DataFrame, w: float = 0.5) -> pd.DataFrame:
    """DD-Ranking's augmentation-robust score per method x IPC x student, paired by seed, as fractions of 1 (the
    soft-label students; those without augmentation: `augment` False):
    IOR_aug = acc(set, aug) - acc(random_real, aug), IOR_noaug = acc(set, no aug) - acc(random_real, no aug) at the
    same IPC; beta = w IOR_aug + (1 - w) IOR_noaug; ARS = (e^beta - e^-1) / (e - e^-1). Mean and std (ddof 1) over
    seeds.

    DD-Ranking 0.2.0 (`pip download ddranking==0.2.0`), ddranking/metrics/aug_robust.py,
    `AugmentationRobustScore.compute_metrics` (line 515, `ars_lambda=0.5`): lines 577-580,
        with_aug_score = syn_data_with_aug_acc - random_data_with_aug_acc
        without_aug_score = syn_data_without_aug_acc - random_data_without_aug_acc
        beta = ars_lambda * with_aug_score + (1 - ars_lambda) * without_aug_score
        ars = (np.exp(beta) - np.exp(-1)) / (np.exp(1) - np.exp(-1))
    "without augmentation" there (lines 274/320, 296/350; utils/train_and_eval.py 101-102, 155-156): the plain
    resize + normalise transform and the identity instead of the batch augmentation, the teacher's labels on those
    images. Its accuracies are percentages (utils/meter.py 168, the value `validate` returns), which puts beta outside
    the [-1, 1] the normalisation assumes; here, as for `label_robust`, they are fractions."""
    key = ["method", "ipc", "student", "seed"]
    soft = ~_flag(df, "hard_label", False)
    aug = df[soft & _flag(df, "augment", True)].set_index(key).top1
    noaug = df[soft & ~_flag(df, "augment", True)].set_index(key).top1
    rows = []
    for (method, ipc, student, seed), acc_noaug in noaug.items():
        if method == "full" or (method, ipc, student, seed) not in aug.index:
            continue
        acc_aug = aug[(method, ipc, student, seed)]
        rnd_aug, rnd_noaug = (s.get(("random_real", ipc, student, seed)) for s in (aug, noaug))
        ior_aug = acc_aug - rnd_aug if rnd_aug is not None else float("nan")
        ior_noaug = acc_noaug - rnd_noaug if rnd_noaug is not None else float("nan")
        beta = w * ior_aug + (1 - w) * ior_noaug
        ars = (np.exp(beta) - np.exp(-1)) / (np.exp(1) - np.exp(-1))
        rows.append({"method": method, "ipc": ipc, "student": student, "seed": seed, "aug": acc_aug,
                     "noaug": acc_noaug, "ior_aug": ior_aug, "ior_noaug": ior_noaug, "ars": ars})
    cols = ["aug", "noaug", "ior_aug", "ior_noaug", "ars"]
    r = pd.DataFrame(rows, columns=key + cols)
    g = r.groupby(["method", "ipc", "student"])[cols]
    out = g.mean().join(g.std(ddof=1).add_suffix("_std")).join(g.size().rename("n")).reset_index()
    rank = {m: i for i, m in enumerate(ordered(out.method.unique()))}
    return out.sort_values(["ipc", "method"], key=lambda c: c.map(_ipc_key) if c.name == "ipc" else c.map(rank))


def write_aug_robust(csvs: list[str], csv: str, md: str, w: float):
    s = augmentation_robust(read_eval_csvs(csvs), w)
    cell = lambda m, d, n, k, f: f"{k * m:.{f}f} ± {k * d:.{f}f}" if n > 1 else f"{k * m:.{f}f}"
    view = s.assign(**{c: [cell(m, d, n, 100, 1) for m, d, n in zip(s[c], s[f"{c}_std"], s["n"])]
                       for c in ("aug", "noaug", "ior_aug", "ior_noaug")},
                    ars=[cell(m, d, n, 1, 3) for m, d, n in zip(s.ars, s.ars_std, s["n"])])
    view = view[["method", "ipc", "student", "aug", "noaug", "ior_aug", "ior_noaug", "ars", "n"]]
    lines = _md_table(view, {}) + ["", "Top-1 (%) of the soft-label students with the evaluation's augmentation (aug: "
                                      "crop + flip + CutMix or MixUp) and without any (noaug); IOR_aug = set (aug) - "
                                      "random_real (aug), IOR_noaug = set (noaug) - random_real (noaug), higher is better; "
                                      f"ARS = (e^b - e^-1) / (e - e^-1), b = {w} IOR_aug + {1 - w:g} IOR_noaug "
                                      "(accuracies as fractions), higher is better (DD-Ranking's augmentation-robust "
                                      "score; random_real: b = 0, ARS 0.269). Mean ± std over n seeds, paired by seed."]
    _write_md_csv(s, lines, csv, md)
    return s


def representativeness(score_csvs) -> pd.DataFrame:
    """Mean (and std) over classes of each method x IPC x space's MMD, coverage and diversity."""
    df = pd.concat([pd.read_csv(c, dtype={"ipc": str}) for c in score_csvs], ignore_index=True)
    df["diversity_ratio"] = df["diversity"] / df["diversity_real"]
    g = df.groupby(["space", "ipc", "method", "k"])[["mmd", "coverage", "diversity", "diversity_ratio"]]
    out = g.mean().join(g.std(ddof=1).add_suffix("_std")).join(g.size().rename("n_classes")).reset_index()
    return out.sort_values(["space", "ipc", "method"], key=lambda c: c.map(_ipc_key) if c.name == "ipc" else c)


def metric_correlation(rep: pd.DataFrame, accuracy_csv) -> pd.DataFrame:
    """Spearman's rank correlation, across the methods at each IPC, between each score and the soft-label students'
    top-1 (mean over seeds)."""
    acc = read_eval_csvs([accuracy_csv])
    acc = acc[main_protocol(acc)].groupby(["method", "ipc"]).top1.mean().rename("top1").reset_index()
    j = rep.merge(acc, on=["method", "ipc"])
    rows = []
    for space, d in j.groupby("space"):  # within each IPC: pooled over IPCs, set size would drive every score
        for scope, dd in [(f"IPC {i}", x) for i, x in sorted(d.groupby("ipc"), key=lambda kv: _ipc_key(kv[0]))]:
            for metric in ("mmd", "coverage", "diversity"):
                v = dd[[metric, "top1"]].dropna()
                rho = v[metric].rank().corr(v["top1"].rank()) if len(v) > 2 else float("nan")
                rows.append({"space": space, "scope": scope, "metric": metric, "spearman_rho": rho, "n": len(v)})
    return pd.DataFrame(rows)


def write_representativeness(score_csvs: list[str], accuracy_csv: str, out_csv: str, out_md: str, corr_csv: str,
                             corr_md: str):
    rep = representativeness(score_csvs)
    f3 = lambda v: f"{v:.3f}"
    view = rep[["space", "ipc", "method", "mmd", "coverage", "diversity", "diversity_ratio", "n_classes"]]
    lines = _md_table(view, {"mmd": f3, "coverage": f3, "diversity": f3, "diversity_ratio": f3}) + [
        "", "Per class against its real training images, mean over classes. MMD: Gaussian kernel, bandwidth the median "
            "distance between the class's real images, biased estimate, square root (lower: more representative). "
            f"coverage: share of real images whose nearest image of the set is within their k-th ({', '.join(map(str, sorted(rep.k.unique())))}) nearest real "
            "neighbour's distance (higher: more of the class covered). diversity: mean distance between the set's images "
            "(diversity_ratio: over the real images' own); undefined at IPC 1. Spaces: the teacher's penultimate "
            "features, and the VAE latents (posterior mean)."]
    _write_md_csv(rep, lines, out_csv, out_md)
    corr = metric_correlation(rep, accuracy_csv)
    lines = _md_table(corr, {"spearman_rho": lambda v: f"{v:+.2f}"}) + [
        "", "Spearman's rank correlation between each set score and the soft-label student top-1 (mean over seeds), "
            "across the methods at each IPC (n: methods). If representativeness drives accuracy, MMD correlates "
            "negatively and coverage positively."]
    _write_md_csv(corr, lines, corr_csv, corr_md)
    return rep, corr


def write_csv(df: pd.DataFrame, path):
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False)


# ------------------------------------------------------------------ normality, storage


def normality_table(gaussian_files) -> pd.DataFrame:
    """One row per class and domain (the VAE latents, t = 0, and each kept inverted timestep): summaries of the
    per-dimension skewness, excess kurtosis and D'Agostino-Pearson p-values stored by `fit_gaussian`."""
    rows = []
    for path in gaussian_files:
        with open_h5(path, "Gaussian") as f:
            a = read_attrs(f)
            for t in [-1] + [int(t) for t in f["timesteps"][:]]:
                g = f["latent"] if t < 0 else f[f"t{t}"]
                skew, kurt, p = g["skew"][:], g["kurtosis"][:], g["normal_p"][:]
                finite_p = p[np.isfinite(p)]
                rows.append({
                    "cls": a["cls"], "domain": "VAE latents" if t < 0 else "inverted latents", "timestep": max(t, 0),
                    "n_images": a["n_images"], "dims": int(skew.size),
                    "mean_abs_skew": float(np.mean(np.abs(skew))), "mean_abs_kurtosis": float(np.mean(np.abs(kurt))),
                    "frac_reject_5pct": float(np.mean(finite_p < 0.05)) if finite_p.size else np.nan,
                    "median_p": float(np.median(finite_p)) if finite_p.size else np.nan,
                })
    return pd.DataFrame(rows)


def storage_table(gaussian_files, image_dirs: dict) -> pd.DataFrame:
    """Per class and IPC: bytes of the Gaussian parameters at the selected timestep (mean and variance, float32)
    against the bytes of that class's distilled images (PNG files as written, and raw uint8 pixels).
    image_dirs: {(cls, ipc): folder}."""
    from PIL import Image

    from .data import list_images

    gauss = {}
    for path in gaussian_files:
        with open_h5(path, "Gaussian") as f:
            a = read_attrs(f)
            gauss[a["cls"]] = (int(a["gaussian_bytes_per_timestep"]), int(np.prod(a["latent_shape"])))
    rows = []
    for (cls, ipc), folder in image_dirs.items():
        files = list_images(folder)
        with Image.open(files[0]) as im:
            w, h = im.size
            c = len(im.getbands())
        g_bytes, dims = gauss[cls]
        png = sum(f.stat().st_size for f in files)
        rows.append({"cls": cls, "ipc": int(ipc), "latent_dims": dims, "gaussian_bytes": g_bytes,
                     "images": len(files), "images_png_bytes": png, "images_raw_bytes": len(files) * w * h * c,
                     "png_over_gaussian": png / g_bytes})
    return pd.DataFrame(rows).sort_values(["ipc", "cls"]).reset_index(drop=True)


# ------------------------------------------------------------------ per-stage costs from the benchmark files


def stage_of(benchmark_file, root) -> str:
    """benchmarks/{dataset}/{stage}/... -> the stage name; decode and evaluate are split by method."""
    parts = Path(benchmark_file).relative_to(root).with_suffix("").parts
    if parts[0] == "variants" and len(parts) > 3:  # variants/{variant}/{stage}/...: an ablation variant's own jobs
        return f"{parts[2]} (variant {parts[1]})"
    if parts[0] in ("decode", "eval") and len(parts) > 2:
        stage = "decode" if parts[0] == "decode" else "evaluate-hard" if "-hard-seed" in parts[-1] else \
            "evaluate-noaug" if "-noaug-seed" in parts[-1] else "evaluate"
        return f"{stage} ({parts[1]})"
    return parts[0] if len(parts) > 1 else parts[0]


def server_peak_rss_mb(benchmark_file, root) -> float | None:
    """The peak RSS of a job that ran in the job server (d3hr/jobserver.py), from the last line of its log
    (logs/<same path>.log): Snakemake's benchmark measured only the client process then. None otherwise."""
    import re

    rel = Path(benchmark_file).relative_to(Path(root).parent)
    log = Path(root).parent.parent / "logs" / rel.with_suffix(".log")
    if not log.is_file():
        return None
    m = re.search(r"\[d3hr\] ran in the job server .* peak RSS (\d+) MB\s*$", log.read_text(errors="replace"))
    return float(m.group(1)) if m else None


def cost_table(benchmark_files, root, n_classes: int) -> pd.DataFrame:
    """Wall time and peak memory per stage, from Snakemake's benchmark files (one per job), the peak memory of a job
    run in the job server from its log."""
    rows = []
    for f in benchmark_files:
        b = pd.read_csv(f, sep="\t")
        rss = server_peak_rss_mb(f, root)
        rows.append({"stage": stage_of(f, root), "s": float(b["s"].iloc[0]),
                     "max_rss_mb": pd.to_numeric(b["max_rss"], errors="coerce").iloc[0] if rss is None else rss})
    df = pd.DataFrame(rows)
    g = df.groupby("stage")
    out = pd.DataFrame({"jobs": g.s.count(), "total_s": g.s.sum(), "mean_s_per_job": g.s.mean(), "max_s": g.s.max(),
                        "peak_rss_mb": g.max_rss_mb.max()}).reset_index()
    out["s_per_class"] = out.total_s / n_classes
    out = out.sort_values("total_s", ascending=False).reset_index(drop=True)
    total = {"stage": "all stages", "jobs": int(out.jobs.sum()), "total_s": out.total_s.sum(),
             "mean_s_per_job": out.total_s.sum() / max(1, out.jobs.sum()), "max_s": out.max_s.max(),
             "peak_rss_mb": out.peak_rss_mb.max(), "s_per_class": out.total_s.sum() / n_classes}
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)


def write_cost_table(benchmark_files: list[str], root: str, n_classes: int, csv: str, md: str):
    t = cost_table(benchmark_files, root, n_classes)
    write_csv(t, csv)
    lines = ["| stage | jobs | total s | s per job | max s | peak RSS MB | s per class |", "|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.stage} | {r.jobs} | {r.total_s:,.0f} | {r.mean_s_per_job:,.1f} | {r.max_s:,.1f} | "
                     f"{r.peak_rss_mb:,.0f} | {r.s_per_class:,.1f} |")
    lines += ["", f"Summed job wall times from the rules' benchmark files ({n_classes} classes); the wall time of a "
              "run is shorter when jobs run in parallel. Peak RSS of a job run in the job server (its log's last "
              "line): it counts the libraries the server imported once and all jobs share (about 0.5 GB)."]
    with atomic_output(md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return t


# ------------------------------------------------------------------ teacher top-1 on each distilled set


def teacher_check_table(teacher_path, sets: dict, labels: dict, resolution: int, channels: int = 3) -> pd.DataFrame:
    """sets: {(method, ipc): [class folder, ...]}; labels: {class name: label}. The teacher is loaded once."""
    from .data import list_images, load_image
    from .nets import load_classifier, predict

    teacher, _ = load_classifier(teacher_path)
    rows = []
    for (method, ipc), folders in sets.items():
        xs, ys = [], []
        for folder in folders:
            files = list_images(folder)
            xs += [load_image(f, resolution, channels) for f in files]
            ys += [labels[Path(folder).name]] * len(files)
        pred = predict(teacher, np.stack(xs), batch=256)
        rows.append({"method": method, "ipc": str(ipc), "images": len(xs), "classes": len(folders),
                     "teacher_top1": float((pred == np.asarray(ys)).mean())})
    df = pd.DataFrame(rows)
    rank = {m: i for i, m in enumerate(ordered(df.method.unique()))}
    return df.sort_values(["ipc", "method"], key=lambda c: c.map(_ipc_key) if c.name == "ipc" else
                          c.map(rank)).reset_index(drop=True)


# ------------------------------------------------------------------ ablation variants (rules/variants.smk)


def versus_random_real(g: "pd.DataFrame") -> "pd.DataFrame":
    """g (method, ipc, student, mean, std, count) with, per row, the difference to random real images at the same IPC
    and student and whether it exceeds twice the larger of the two seed stds ("resolved")."""
    ref = g[g.method.astype(str) == "random_real"].set_index(["ipc", "student"])[["mean", "std"]]
    diff, resolved = [], []
    for r in g.itertuples():
        k = (r.ipc, r.student)
        if str(r.method) == "random_real" or k not in ref.index:
            diff.append(np.nan), resolved.append("")
            continue
        d = r.mean - ref.loc[k, "mean"]
        s = max(r.std if r.count > 1 else np.nan, ref.loc[k, "std"])
        diff.append(d)
        resolved.append("" if np.isnan(s) else "above" if d > 2 * s else "below" if d < -2 * s else "within")
    return g.assign(vs_random_real=diff, vs_random_real_2std=resolved)


def ablation_table(eval_files: list[str], variants: dict, out_csv: str, out_md: str, png: str, pdf: str):
    """Student top-1 of every variant beside D3HR (and the other methods evaluated at the variants' IPCs): mean, std, n
    over seeds, the difference to random real images and whether it exceeds twice the larger seed std, and what each
    variant changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .methods import METHOD_COLORS, METHOD_LABELS

    rows = [json.loads(Path(f).read_text()) for f in eval_files]
    df = pd.DataFrame([{k: r[k] for k in ("method", "ipc", "student", "seed", "top1")} for r in rows])
    df["top1"] *= 100
    df["ipc"] = df.ipc.astype(int)
    g = df.groupby(["method", "ipc", "student"]).top1.agg(["mean", "std", "count"]).reset_index()
    names = {f"variant_{k}": k for k in variants}
    base = ordered(set(g.method) - set(names))
    order = base + [m for m in names if m in set(g.method)]
    g["method"] = pd.Categorical(g.method, order, ordered=True)
    g = versus_random_real(g.sort_values(["student", "ipc", "method"]))
    g["changes"] = [json.dumps(variants[names[m]]) if m in names else "" for m in g.method]
    with atomic_output(out_csv) as tmp:
        g.to_csv(tmp, index=False, float_format="%.2f")
    lines = ["| set | IPC | student | top-1 % | seeds | minus random real | beyond 2 std | what changed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in g.itertuples():
        sd = f" ± {r.std:.1f}" if r.count > 1 else ""
        vs = "" if np.isnan(r.vs_random_real) else f"{r.vs_random_real:+.1f}"
        lines.append(f"| {METHOD_LABELS.get(r.method, names.get(r.method, r.method))} | {r.ipc} | {r.student} | "
                     f"{r.mean:.1f}{sd} | {r.count} | {vs} | {r.vs_random_real_2std} | {r.changes.replace('|', '/')} |")
    lines += ["", "Minus random real: the set's mean top-1 minus random real images' at the same IPC and student; beyond "
              "2 std: whether that difference exceeds twice the larger of the two seed stds (above / below / within)."]
    with atomic_output(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    sns.set_theme(style="whitegrid", context="paper")
    ipcs = sorted(df.ipc.unique())
    fig, axes = plt.subplots(1, len(ipcs), figsize=(5 * len(ipcs) + 2, 0.45 * len(order) + 1.2), squeeze=False,
                             sharey=True)
    colors = {m: METHOD_COLORS.get(m, "#8C8C8C") for m in order}
    for ax, ipc in zip(axes[0], ipcs):
        sns.barplot(df[df.method.isin(order) & (df.ipc == ipc)], y="method", x="top1", order=order, hue="method",
                    palette=colors, errorbar="sd", capsize=0.2, ax=ax, legend=False)
        ax.set_yticks(range(len(order)), [METHOD_LABELS.get(m, names.get(m, m)) for m in order])
        ax.set_xlabel(f"student top-1 (%), IPC {ipc}, mean ± std over seeds")
        ax.set_ylabel("")
    fig.tight_layout()
    for path in (png, pdf):
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=150)
    plt.close(fig)
    return g
