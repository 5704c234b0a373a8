"""The paper's figures and tables, from the per-class files of a run (one function per figure).

Every figure is written as a vector PDF and a PNG, in one seaborn style, and with a CSV of exactly the numbers it
plots (its "data file"), so that a figure can be checked against its inputs and re-plotted elsewhere:

    normality        VAE latents vs inverted latents: skewness, kurtosis, normality tests, Q-Q   (docs/method.md §3)
    accuracy_vs_ipc  student top-1 vs IPC per method and student, error bars over seeds           (docs/method.md §6)
    timestep         teacher top-1 on decoded images vs the inversion timestep                   (docs/method.md §2)
    group_sampling   best score vs m, distribution of group scores, group vs one random draw     (docs/method.md §4)
    samples          distilled images per class, D3HR and each baseline side by side
    storage          bytes of Gaussian parameters per class vs bytes of the distilled images

The tables (normality, storage, costs, teacher check, ...) are made by d3hr/tables.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import D3HRError
from .h5io import atomic_output, open_h5, read_attrs
from .tables import normality_table, storage_table, write_csv

from .methods import METHOD_COLORS, METHOD_LABELS, ordered

DOMAIN_COLORS = {"VAE latents": "#4C72B0", "inverted latents": "#C44E52"}
MAX_POINTS = 200_000  # values per distribution drawn in a histogram (a seeded subsample beyond that)


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def style():
    """The style of every figure: seaborn 'paper' context, white grid, embedded TrueType fonts."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="deep", font="DejaVu Sans", font_scale=1.3,
                  rc={"pdf.fonttype": 42, "ps.fonttype": 42, "savefig.bbox": "tight", "savefig.pad_inches": 0.05,
                      "axes.titleweight": "bold", "axes.titlesize": "medium", "legend.frameon": False})


def save(fig, png, pdf, dpi=200):
    """Write a figure as PNG and PDF, atomically."""
    import matplotlib.pyplot as plt

    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    plt.close(fig)


def _subsample(x: np.ndarray, seed=0) -> np.ndarray:
    x = x[np.isfinite(x)]
    if len(x) <= MAX_POINTS:
        return x
    return np.random.default_rng(seed).choice(x, MAX_POINTS, replace=False)


def _panel_label(ax, k):
    ax.text(-0.12, 1.04, "abcdefgh"[k], transform=ax.transAxes, fontsize="large", fontweight="bold", va="bottom")


# ------------------------------------------------------------------ normality (docs/method.md §3)


def qq_data(latents_h5, inverted_h5, timestep: int, n_dims: int = 4) -> pd.DataFrame:
    """Q-Q points of one class for `n_dims` evenly spaced latent dimensions: standardised sorted values against the
    standard normal quantiles (Blom's plotting positions), for the VAE latents and the inverted latents at t."""
    from scipy import stats

    with open_h5(latents_h5, "latents") as f:
        x0 = f["latents"][:].reshape(f["latents"].shape[0], -1)
        cls = read_attrs(f)["cls"]
    with open_h5(inverted_h5, "inverted latents") as f:
        if f"t{timestep}" not in f:
            raise D3HRError(f"{inverted_h5}: the inverted latents at t={timestep} are not stored (stored timesteps: "
                            f"{list(read_attrs(f).get('stored_timesteps', []))}; invert.store_classes)")
        xt = f[f"t{timestep}"][:].reshape(f[f"t{timestep}"].shape[0], -1)
    dims = np.unique(np.linspace(0, x0.shape[1] - 1, n_dims).round().astype(int))
    n = x0.shape[0]
    q = stats.norm.ppf((np.arange(1, n + 1) - 0.375) / (n + 0.25))
    rows = []
    for domain, x in (("VAE latents", x0), ("inverted latents", xt)):
        for d in dims:
            v = x[:, d].astype(np.float64)
            z = np.sort((v - v.mean()) / (v.std(ddof=1) or 1.0))
            rows.append(pd.DataFrame({"cls": cls, "domain": domain, "dim": int(d), "theoretical": q, "sample": z}))
    return pd.concat(rows, ignore_index=True)


def plot_normality(gaussian_files: list[str], latents_h5: str, inverted_h5: str, timestep: int, png: str, pdf: str,
                   table_csv: str, qq_csv: str, n_dims: int):
    import matplotlib.pyplot as plt
    import seaborn as sns

    style()
    table = normality_table(gaussian_files)
    write_csv(table, table_csv)
    qq = qq_data(latents_h5, inverted_h5, timestep, n_dims)
    write_csv(qq, qq_csv)
    per_dim = {"skew": {}, "kurtosis": {}}
    for path in gaussian_files:
        with open_h5(path, "Gaussian") as f:
            for key in per_dim:
                per_dim[key].setdefault("VAE latents", []).append(f[f"latent/{key}"][:])
                per_dim[key].setdefault("inverted latents", []).append(f[f"t{timestep}/{key}"][:])
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for k, (key, title) in enumerate((("skew", "skewness"), ("kurtosis", "excess kurtosis"))):
        ax = axes[0, k]
        long = pd.concat([pd.DataFrame({"value": _subsample(np.concatenate(v)), "domain": d})
                          for d, v in per_dim[key].items()], ignore_index=True)
        sns.histplot(long, x="value", hue="domain", palette=DOMAIN_COLORS, stat="density", common_norm=False,
                     element="step", fill=True, alpha=0.3, bins=60, ax=ax)
        ax.axvline(0, color="k", lw=0.8, ls=":")
        ax.set(xlabel=f"per-dimension {title}", ylabel="density",
               title=f"{title.capitalize()}: VAE latents vs inverted (t = {timestep})")
        legend = ax.get_legend()
        if legend is not None:
            legend.set_title(None)
    ax = axes[1, 0]
    tested = table.dropna(subset=["frac_reject_5pct"])
    # lines join the kept timesteps only: nothing is measured between the VAE latents (t = 0) and the first of them
    curve, vae = tested[tested.timestep > 0], tested[tested.timestep == 0]
    if len(tested):
        if len(curve):
            sns.lineplot(curve, x="timestep", y="frac_reject_5pct", units="cls", estimator=None, color="0.75", lw=0.8,
                         ax=ax)
            sns.lineplot(curve, x="timestep", y="frac_reject_5pct", errorbar=None,
                         color=DOMAIN_COLORS["inverted latents"], lw=2.5, marker="o", ax=ax,
                         label="inverted, mean over classes")
        if len(vae):
            ax.plot(vae.timestep, vae.frac_reject_5pct, "o", color="0.75", ms=4)
            ax.plot([0], [vae.frac_reject_5pct.mean()], "s", color=DOMAIN_COLORS["VAE latents"], ms=9,
                    label="VAE latents, mean over classes")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="lower left")
    else:
        ax.text(0.5, 0.5, "the normality test needs\nat least 20 images per class", ha="center", va="center",
                transform=ax.transAxes)
    ax.axvline(timestep, color="k", lw=0.8, ls="--")
    ax.set(xlabel="inversion timestep t (0 = VAE latents)", ylabel="share of dimensions rejected",
           title="Normality test (D'Agostino-Pearson, 5%)")
    ax = axes[1, 1]
    for (domain, dim), g in qq.groupby(["domain", "dim"], sort=False):
        ax.plot(g.theoretical, g["sample"], ".", ms=3, alpha=0.6, color=DOMAIN_COLORS[domain],
                label=domain if dim == qq.dim.min() else None)
    lim = [qq.theoretical.min(), qq.theoretical.max()]
    ax.plot(lim, lim, color="k", lw=0.8, ls=":")
    ax.set(xlabel="standard normal quantile", ylabel="standardised value",
           title=f"Q-Q, class {qq.cls.iloc[0]}, {qq.dim.nunique()} dimensions")
    ax.legend(loc="upper left", markerscale=4)
    for k, ax in enumerate(axes.flat):
        _panel_label(ax, k)
    fig.tight_layout()
    save(fig, png, pdf)
    return table


# ------------------------------------------------------------------ accuracy vs IPC (docs/method.md §6)


def accuracy_summary(accuracy_csv) -> pd.DataFrame:
    df = pd.read_csv(accuracy_csv, dtype={"ipc": str})
    g = df.assign(top1=df.top1 * 100).groupby(["method", "ipc", "student"]).top1
    s = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n_seeds": g.count()}).reset_index()
    return s.sort_values(["student", "method", "ipc"], key=lambda c: c.map(_ipc_order) if c.name == "ipc" else c)


def _ipc_order(v):
    return 10**9 if str(v) == "all" else int(v)


def plot_accuracy_vs_ipc(accuracy_csv: str, png: str, pdf: str, data_csv: str):
    import matplotlib.pyplot as plt

    style()
    s = accuracy_summary(accuracy_csv)
    write_csv(s, data_csv)
    students = sorted(s.student.unique())
    fig, axes = plt.subplots(1, len(students), figsize=(5.5 * len(students) + 2.5, 4.2), squeeze=False)
    ipcs = sorted({i for i in s.ipc if i != "all"}, key=int)
    for ax, student in zip(axes[0], students):
        d = s[s.student == student]
        for method in ordered(d.method):
            g = d[d.method == method]
            if method == "full" or set(g.ipc) == {"all"}:
                mean, sd = float(g["mean"].iloc[0]), float(np.nan_to_num(g["std"].iloc[0]))
                ax.axhline(mean, color=METHOD_COLORS.get(method, "0.3"), ls="--", lw=1.5, label=label(method))
                ax.axhspan(mean - sd, mean + sd, color=METHOD_COLORS.get(method, "0.3"), alpha=0.12, lw=0)
                continue
            g = g.set_index("ipc").reindex(ipcs)
            ax.errorbar(range(len(ipcs)), g["mean"], yerr=g["std"].fillna(0), marker="o", capsize=3, lw=2,
                        color=METHOD_COLORS.get(method), label=label(method),
                        zorder=3 if method == "d3hr" else 2)
        ax.set_xticks(range(len(ipcs)), ipcs)
        ax.set(xlabel="images per class (IPC)", ylabel="top-1 accuracy (%)", title=f"student: {student}")
    n = int(s.n_seeds.max())
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title=f"mean ± std, {n} seed{'s' * (n > 1)}")
    fig.tight_layout()
    save(fig, png, pdf)
    return s


# ------------------------------------------------------------------ inversion-timestep ablation


def timestep_table(ablation_files) -> pd.DataFrame:
    rows = []
    for path in ablation_files:
        with open_h5(path, "timestep ablation") as f:
            a = read_attrs(f)
            for t in f["timesteps"][:]:
                pred = f[f"t{int(t)}/teacher_pred"][:]
                rows.append({"cls": a["cls"], "timestep": int(t), "n": int(pred.size),
                             "correct": int((pred == int(a["label"])).sum())})
    return pd.DataFrame(rows)


def plot_timestep(ablation_files: list[str], main_timestep: int, png: str, pdf: str, data_csv: str,
                  n_classes_shown: int = 5):
    import matplotlib.pyplot as plt

    style()
    per_class = timestep_table(ablation_files)
    g = per_class.groupby("timestep")[["n", "correct"]].sum().reset_index()
    g["top1"] = g.correct / g.n
    g["se"] = np.sqrt(g.top1 * (1 - g.top1) / g.n)  # binomial standard error over all decoded images
    write_csv(g, data_csv)
    shown = sorted(ablation_files)[:n_classes_shown]
    strips = []
    for path in shown:
        with open_h5(path, "timestep ablation") as f:
            ts = [int(t) for t in f["timesteps"][:]]
            strips.append((read_attrs(f)["cls"], ts, [f[f"t{t}/images"][0] for t in ts]))
    fig = plt.figure(figsize=(12, 4.4 + 0.9 * len(strips)))
    gs = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.9 * len(strips)], hspace=0.35)
    ax = fig.add_subplot(gs[0])
    ax.errorbar(g.timestep, 100 * g.top1, yerr=100 * g.se, marker="o", capsize=3, lw=2, color=METHOD_COLORS["d3hr"])
    ax.axvline(main_timestep, color="k", lw=0.8, ls="--")
    right = main_timestep > (g.timestep.min() + g.timestep.max()) / 2
    ax.text(main_timestep, ax.get_ylim()[1], f" main setting t = {main_timestep} ", va="top", fontsize="small",
            ha="right" if right else "left")
    ipc = None
    with open_h5(ablation_files[0], "timestep ablation") as f:
        ipc = read_attrs(f)["ipc"]
    ax.set(xlabel="inversion timestep t", ylabel="teacher top-1 on decoded images (%)",
           title=f"Inversion timestep: {len(ablation_files)} classes x IPC {ipc}, ± binomial s.e.")
    ax2 = fig.add_subplot(gs[1])
    rows = [np.concatenate([_rgb(im) for im in ims], axis=1) for _, _, ims in strips]
    ax2.imshow(np.concatenate(rows, axis=0), interpolation="nearest")
    h, w = strips[0][2][0].shape[:2]
    ax2.set_xticks([w * (i + 0.5) for i in range(len(strips[0][1]))], [str(t) for t in strips[0][1]], fontsize="x-small")
    ax2.set_yticks([h * (i + 0.5) for i in range(len(strips))], [c for c, _, _ in strips], fontsize="small")
    ax2.grid(False)
    ax2.set_xlabel("first decoded image of the selected group, per timestep")
    save(fig, png, pdf)
    return g


def _rgb(im: np.ndarray) -> np.ndarray:
    return np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im


# ------------------------------------------------------------------ group sampling (docs/method.md §4)


def best_vs_m(selected_files, n_points=40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best score among the first m candidate groups (from the stored scores in draw order and per-chunk bests),
    for log-spaced m, per class and IPC; and one row per file with the best, the random and the median score."""
    curves, summary = [], []
    for path in selected_files:
        with open_h5(path, "selected latents") as f:
            a = read_attrs(f)
            head = f["scores_head"][:].astype(np.float64)
            chunk_best = f["chunk_best"][:].astype(np.float64)
        m, chunk = int(a["m"]), int(a["chunk_groups"])
        median = float(np.nanmedian(head)) if head.size else np.nan  # a NaN score (a zero std at IPC 2) never wins
        ms = np.unique(np.geomspace(1, max(head.size, 1), n_points).round().astype(int)) if head.size else np.array([], int)
        cummin = np.fmin.accumulate(head) if head.size else head  # fmin: past a NaN score, the best of the others
        pts = [(int(k), float(cummin[k - 1])) for k in ms]
        # beyond the stored head: the best at each chunk boundary
        for c in range(len(chunk_best)):
            k = min(m, (c + 1) * chunk)
            if k > head.size:
                pts.append((k, float(min(cummin[-1] if head.size else np.inf, chunk_best[: c + 1].min()))))
        for k, best in pts:
            if not np.isfinite(best):  # the first groups scored NaN (a zero std at IPC 2): no best yet
                continue
            curves.append({"cls": a["cls"], "ipc": int(a["ipc"]), "m": k, "best_score": best,
                           "relative_best": best / median})
        summary.append({"cls": a["cls"], "ipc": int(a["ipc"]), "m": m, "best_score": float(a["score"]),
                        "random_score": float(a["random_score"]), "median_score": median,
                        "scores_stored": int(head.size)})
    return pd.DataFrame(curves), pd.DataFrame(summary)


def plot_group_sampling(selected_files: list[str], png: str, pdf: str, curve_csv: str, summary_csv: str,
                        accuracy_csv: str | None = None):
    import matplotlib.pyplot as plt
    import seaborn as sns

    style()
    curves, summ = best_vs_m(selected_files)
    write_csv(curves, curve_csv)
    write_csv(summ, summary_csv)
    ipcs = sorted(summ.ipc.unique())
    pal = dict(zip(ipcs, sns.color_palette("rocket_r", len(ipcs) + 1)[1:]))
    acc = None
    if accuracy_csv is not None:
        a = pd.read_csv(accuracy_csv, dtype={"ipc": str})
        acc = a[a.method.isin(["d3hr", "d3hr_nogroup"])]
        acc = acc if len(acc) and acc.method.nunique() == 2 else None
    ncol = 3 + (acc is not None)
    fig, axes = plt.subplots(1, ncol, figsize=(5.2 * ncol, 4.4))
    ax = axes[0]
    sns.lineplot(curves, x="m", y="relative_best", hue="ipc", palette=pal, errorbar="sd", lw=2, ax=ax)
    ax.set_xscale("log")
    ax.set(xlabel="candidate groups m", ylabel="best score / median group score",
           title="Best group score vs number of groups")
    ax.legend(title="IPC")
    ax = axes[1]
    dist = []
    for path in selected_files:
        with open_h5(path, "selected latents") as f:
            head, ipc = f["scores_head"][:], int(read_attrs(f)["ipc"])
        if head.size:
            dist.append((ipc, head[np.isfinite(head)] / np.nanmedian(head)))
    if dist:
        d = pd.concat([pd.DataFrame({"ipc": ipc, "relative_score": _subsample(np.concatenate([v for i, v in dist if i == ipc]))})
                       for ipc in sorted({i for i, _ in dist})], ignore_index=True)
        sns.histplot(d, x="relative_score", hue="ipc", palette=pal, stat="density", common_norm=False, element="step",
                     fill=True, alpha=0.25, bins=80, ax=ax)
        for ipc in ipcs:
            s = summ[summ.ipc == ipc]
            ax.axvline((s.best_score / s.median_score).mean(), color=pal[ipc], ls="--", lw=1.2)
        ax.set(xlabel="group score / median group score", ylabel="density",
               title="Scores of all candidate groups (--: chosen)")
        if ax.get_legend() is not None:
            ax.get_legend().set_title("IPC")
    ax = axes[2]
    long = pd.concat([summ.assign(kind="one random draw", rel=summ.random_score / summ.median_score),
                      summ.assign(kind="group sampling", rel=summ.best_score / summ.median_score)], ignore_index=True)
    state = np.random.get_state()  # seaborn jitters the points with numpy's global generator: seed it, then restore
    np.random.seed(0)
    sns.stripplot(long, x="ipc", y="rel", hue="kind", palette={"one random draw": METHOD_COLORS["d3hr_nogroup"],
                  "group sampling": METHOD_COLORS["d3hr"]}, dodge=True, size=5, alpha=0.8, ax=ax)
    np.random.set_state(state)
    ax.set(xlabel="IPC", ylabel="score / median group score", title="Group sampling vs one random draw (per class)")
    ax.legend(title=None)
    if acc is not None:
        ax = axes[3]
        a = acc.assign(top1=acc.top1 * 100, method=acc.method.map(label))
        a = a.sort_values("ipc", key=lambda c: c.map(_ipc_order))
        sns.barplot(a, x="ipc", y="top1", hue="method", errorbar="sd", capsize=0.15,
                    palette={label("d3hr"): METHOD_COLORS["d3hr"], label("d3hr_nogroup"): METHOD_COLORS["d3hr_nogroup"]},
                    ax=ax)
        ax.set(xlabel="IPC", ylabel="student top-1 (%)", title="Student accuracy (mean ± std over seeds)")
        ax.legend(title=None, loc="lower right")
    for k, ax in enumerate(axes):
        _panel_label(ax, k)
    fig.tight_layout()
    save(fig, png, pdf)
    return curves, summ


# ------------------------------------------------------------------ sample grids


def plot_samples(image_dirs: dict, png, pdf, data_csv, per_class=5):
    """image_dirs: {method: [class folder, ...]} (same classes in the same order for every method)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from .data import list_images

    style()
    methods = ordered(image_dirs)
    rows, mosaics = [], {}
    files_of = {m: [list_images(f)[:per_class] for f in image_dirs[m]] for m in methods}
    per_class = max(len(f) for fs in files_of.values() for f in fs)
    for method in methods:
        lines = []
        for folder, files in zip(image_dirs[method], files_of[method]):
            ims = []
            for i, f in enumerate(files):
                im = np.asarray(Image.open(f).convert("RGB"))
                ims.append(im)
                rows.append({"method": method, "cls": Path(folder).name, "index": i, "file": str(f),
                             "mean_pixel": float(im.mean())})
            h, w = ims[0].shape[:2]
            ims += [np.full((h, w, 3), 255, np.uint8)] * (per_class - len(ims))
            pad = lambda im: np.pad(im, ((1, 1), (1, 1), (0, 0)), constant_values=255)
            lines.append(np.concatenate([pad(im) for im in ims], axis=1))
        mosaics[method] = np.concatenate(lines, axis=0)
    write_csv(pd.DataFrame(rows), data_csv)
    classes = [Path(f).name for f in image_dirs[methods[0]]]
    H, W = mosaics[methods[0]].shape[:2]
    h = H / len(classes)
    panel_h = 0.5 * len(classes) + 0.6  # inches
    fig, axes = plt.subplots(1, len(methods), figsize=(len(methods) * max(2.6, panel_h * W / H) + 1.6, panel_h + 0.5),
                             squeeze=False)
    for ax, method in zip(axes[0], methods):
        ax.imshow(mosaics[method], interpolation="nearest")
        ax.set_title(label(method), color=METHOD_COLORS.get(method, "k"))
        ax.set_xticks([])
        ax.set_yticks([h * (i + 0.5) for i in range(len(classes))], classes if ax is axes[0, 0] else [])
        ax.grid(False)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout()
    save(fig, png, pdf, dpi=300)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ storage


def sample_grid(images: list[str], methods: list[str], classes: list[str], ipc: int, per_class: int, png: str,
                pdf: str, data_csv: str):
    """plot_samples of the image folders `images` (results/{dataset}/images/{method}/ipc{ipc}/{class})."""
    by_key = {Path(d).parts[-3:]: d for d in images}
    dirs = {m: [by_key[m, f"ipc{ipc}", c] for c in classes] for m in methods}
    return plot_samples(dirs, png=png, pdf=pdf, data_csv=data_csv, per_class=per_class)


def storage_figure(gaussian_files: list[str], images: list[str], ipcs: list[int], classes: list[str], png: str,
                   pdf: str, table_csv: str):
    """plot_storage of D3HR's image folders `images` (results/{dataset}/images/d3hr/ipc{ipc}/{class})."""
    dirs = {(Path(d).name, int(Path(d).parent.name[3:])): d for d in images}
    return plot_storage(gaussian_files, {(c, i): dirs[c, i] for i in ipcs for c in classes}, png, pdf, table_csv)


def plot_storage(gaussian_files, image_dirs: dict, png, pdf, table_csv):
    import matplotlib.pyplot as plt

    style()
    t = storage_table(gaussian_files, image_dirs)
    write_csv(t, table_csv)
    g = t.groupby("ipc")[["gaussian_bytes", "images_png_bytes", "images_raw_bytes"]].mean().reset_index()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    x = np.arange(len(g))
    wbar = 0.27
    bars = [("images_raw_bytes", "distilled images, raw uint8", "#8C8C8C"),
            ("images_png_bytes", "distilled images, PNG", METHOD_COLORS["random_real"]),
            ("gaussian_bytes", "Gaussian (mean + variance, float32)", METHOD_COLORS["d3hr"])]
    for k, (col, name, color) in enumerate(bars):
        ax.bar(x + (k - 1) * wbar, g[col], wbar, label=name, color=color)
    ax.set_yscale("log")
    ax.set_xticks(x, [str(i) for i in g.ipc])
    ax.set(xlabel="images per class (IPC)", ylabel="bytes per class (mean over classes)",
           title="Storage per class")
    ax.legend(loc="upper left", fontsize="small")
    save(fig, png, pdf)
    return t


# ------------------------------------------------------------------ representativeness x diversity (docs/method.md §7)


def plot_representativeness(rep_csv: str, png: str, pdf: str):
    """Each method at each IPC on the representativeness (MMD to the real class, lower is better) x diversity (mean
    distance within the set over the real images' own) plane; rows: teacher features, VAE latents."""
    import matplotlib.pyplot as plt

    style()
    rep = pd.read_csv(rep_csv, dtype={"ipc": str})
    rep = rep[rep.diversity_ratio.notna()]  # diversity needs 2+ images per class
    spaces = [s for s in ("teacher", "vae") if s in set(rep.space)]
    ipcs = sorted(set(rep.ipc), key=_ipc_order)
    if not spaces or not ipcs:  # e.g. select.ipc: [1]: say so in the figure rather than fail the run
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "diversity needs 2+ images per class: no IPC to show", ha="center", va="center")
        save(fig, png, pdf)
        return
    import seaborn as sns

    extra = [m for m in ordered(rep.method) if m not in METHOD_COLORS]  # ablation variants: colours of their own
    colors = {**dict(zip(extra, sns.color_palette("colorblind", len(extra)).as_hex())), **METHOD_COLORS}
    fig, axes = plt.subplots(len(spaces), len(ipcs), figsize=(4.2 * len(ipcs) + 2.5, 3.8 * len(spaces)), squeeze=False)
    names = {"teacher": "teacher features", "vae": "VAE latents"}
    for r, space in enumerate(spaces):
        for c, ipc in enumerate(ipcs):
            ax, d = axes[r, c], rep[(rep.space == space) & (rep.ipc == ipc)]
            for method in ordered(d.method):
                g = d[d.method == method].iloc[0]
                ax.errorbar(g.mmd, g.diversity_ratio, xerr=g.mmd_std, yerr=g.diversity_ratio_std, fmt="o", ms=8,
                            capsize=2, color=colors[method], label=label(method),
                            zorder=3 if method == "d3hr" else 2)
            ax.axhline(1.0, color="0.4", ls=":", lw=1)
            ax.set(title=f"IPC {ipc}, {names[space]}", xlabel="MMD to the real class (lower: more representative)",
                   ylabel="diversity / real images' own" if c == 0 else "")
    legend = {}  # every method of every panel (variants exist at one IPC only)
    for ax in axes.flat:
        for h, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, h)
    fig.legend(legend.values(), legend.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95),
               title="mean ± std over classes")
    fig.tight_layout()
    save(fig, png, pdf)
