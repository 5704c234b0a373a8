"""Ablations of D3HR's settings (docs/method.md §2, §4, §5): the default pipeline with one setting changed, decoded into
an image set per class that the `evaluate` rule trains students on like any other method (`variant_{name}`).

A variant overrides any of:
    decode_start     'inverted' (paper) or 'above' (the authors' code: one grid step higher)      §5
    skew_mode, skew  the skewness term of the score: 'paper' / 'code' and its weight l_skew         §4 (4.1)
    m                the number of candidate groups                                                 §4
    invert_guidance  CFG scale of the inversion: the class's latents are inverted again to the
                     selection timestep with it, and the Gaussian refitted                          §2, §3
Everything else, the seeds included, is the main run's, so a variant differs from `d3hr` by its one setting: with the
same m and seed it draws the very same candidate groups and only scores or decodes them differently.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import D3HRError
from .ddim import invert, timestep_grid
from .decode import decode_latents, start_timestep
from .device import model_dtype
from .gaussian import fit
from .group_sampling import Weights, select_group
from .h5io import check_finite, open_h5, read_attrs
from .images import save_pngs
from .models import load_ldm

@torch.no_grad()
def variant_class(latents_h5, gaussian_h5, pipeline_dir, out_dir, ipc: int, seed: int, timestep: int, m: int,
                  weights: Weights, skew_mode: str, chunk_groups: int, decode_guidance: float, decode_start: str,
                  invert_guidance: float, batch_size: int = 256, device="cpu", threads: int = 1):
    """Select IPC latents of one class under the variant's settings and decode them to PNGs in `out_dir`."""
    with open_h5(gaussian_h5, "Gaussian") as f:
        a = read_attrs(f)
        if f"t{timestep}" not in f:
            raise D3HRError(f"{gaussian_h5}: no Gaussian for timestep {timestep}")
        mu, var = f[f"t{timestep}/mean"][:], f[f"t{timestep}/var"][:]
    cls, label, shape = a["cls"], int(a["label"]), tuple(a["latent_shape"])
    num_steps = int(a["num_inference_steps"])
    ldm = load_ldm(pipeline_dir, device=device, dtype=model_dtype(torch.device(device)))
    ldm.check_label(cls, label)
    grid = timestep_grid(ldm.num_train_timesteps, num_steps)
    if float(invert_guidance) != float(a["guidance"]):  # §2 again with another CFG scale, then §3's fit
        with open_h5(latents_h5, "latents") as f:
            z0 = f["latents"][:]
        check_finite(z0, latents_h5, "latents")
        zt = []
        for i in range(0, len(z0), batch_size):
            z = torch.from_numpy(z0[i : i + batch_size]).to(device)
            labels = torch.full((len(z),), label, device=device, dtype=torch.long)
            zt.append(invert(ldm.transformer, z, labels, ldm.alphas_cumprod, grid, [timestep], ldm.null_label,
                             float(invert_guidance))[timestep].cpu().numpy())
        zt = np.concatenate(zt).reshape(len(z0), -1)
        check_finite(zt, out_dir, f"t{timestep} (inverted with guidance {invert_guidance})")
        mu, var = fit(zt)
    sel = select_group(mu, var, ipc, m, seed, key=(cls,), weights=weights, skew_mode=skew_mode,
                       chunk_groups=chunk_groups, threads=threads, head=0)
    t0 = start_timestep(timestep, grid, decode_start)
    images = decode_latents(ldm, sel.latents.reshape(ipc, *shape).astype(np.float32), t0, label, grid,
                            float(decode_guidance), batch_size)
    save_pngs(images, out_dir, prefix=str(cls).replace(" ", "_"))
    print(f"[d3hr] variant of {cls}: m={m} skew_mode={skew_mode} l_skew={weights.skew} decode from t={t0} "
          f"(inverted to {timestep} with guidance {invert_guidance}); score {sel.score:.4f}", file=sys.stderr)
    return sel


def ablation_table(eval_files, variants: dict, out_csv, out_md, png, pdf):
    """Student top-1 of every variant beside D3HR (and the other methods evaluated at that IPC): mean, std, n over
    seeds, and what each variant changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from .h5io import atomic_output
    from .methods import METHOD_COLORS, METHOD_LABELS, ordered

    rows = [json.loads(Path(f).read_text()) for f in eval_files]
    df = pd.DataFrame([{k: r[k] for k in ("method", "ipc", "student", "seed", "top1")} for r in rows])
    df["top1"] *= 100
    g = df.groupby(["method", "student"]).top1.agg(["mean", "std", "count"]).reset_index()
    names = {f"variant_{k}": k for k in variants}
    base = ordered(set(g.method) - set(names))
    order = base + [m for m in names if m in set(g.method)]
    g["method"] = pd.Categorical(g.method, order, ordered=True)
    g = g.sort_values(["student", "method"])
    g["changes"] = [json.dumps(variants[names[m]]) if m in names else "" for m in g.method]
    with atomic_output(out_csv) as tmp:
        g.to_csv(tmp, index=False, float_format="%.2f")
    lines = ["| set | student | top-1 % | seeds | what changed |", "|---|---|---|---|---|"]
    for r in g.itertuples():
        sd = f" ± {r.std:.1f}" if r.count > 1 else ""
        lines.append(f"| {METHOD_LABELS.get(r.method, names.get(r.method, r.method))} | {r.student} | {r.mean:.1f}{sd} | {r.count} | "
                     f"{r.changes.replace('|', '/')} |")
    with atomic_output(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    colors = {m: METHOD_COLORS.get(m, "#8C8C8C") for m in order}
    sns.barplot(df[df.method.isin(order)], y="method", x="top1", order=order, hue="method", palette=colors,
                errorbar="sd", capsize=0.2, ax=ax, legend=False)
    ax.set_yticks(range(len(order)), [METHOD_LABELS.get(m, names.get(m, m)) for m in order])
    ax.set_xlabel(f"student top-1 (%), IPC {df.ipc.iloc[0]}, mean ± std over seeds")
    ax.set_ylabel("")
    fig.tight_layout()
    for path in (png, pdf):
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=150)
    plt.close(fig)
    return g
