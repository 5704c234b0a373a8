"""Why D3HR's images are off-class: per-class diagnostics of the selection timestep's Gaussian (docs/results.md,
"Off-class images"; rules/diagnostics.smk).

For one class, at the selection timestep t (alpha_bar a):
- the inverted latents' Gaussian against the forward process of the same images, x_t = sqrt(a) z_0 + sqrt(1 - a) eps,
  whose per-dimension mean and variance are exactly sqrt(a) mu_0 and a var_0 + 1 - a (mu_0, var_0: the VAE latents'):
  mean variance, ||mu|| and the rms sqrt(mean(mu^2 + var)) of each;
- the round trip: the teacher's top-1 on real inverted latents (the stored reference subset, d3hr/invert.py) decoded
  from t with the decoding's guidance: whether the inversion's trajectory itself stays on the class;
- the class's forward-noised mean sqrt(a) mu_0 decoded (one image): whether the class's centre is on the class;
- the teacher's top-1 on the class's images of each named image set (D3HR, its variants, the baselines).
`diagnostics_table` gathers the classes into one table, per class and over classes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import D3HRError
from .h5io import atomic_output, check_finite, open_h5, read_attrs


def moment_stats(mu, var, mu0, var0, alpha_bar: float) -> dict:
    """The inverted Gaussian (mu, var) against the forward process's (sqrt(a) mu0, a var0 + 1 - a), per-dimension
    means of the variances, norms of the means and rms of the latents."""
    mu, var, mu0, var0 = (np.asarray(v, dtype=np.float64) for v in (mu, var, mu0, var0))
    a = float(alpha_bar)
    mu_f, var_f = np.sqrt(a) * mu0, a * var0 + (1 - a)
    return {"alpha_bar": a,
            "inv_var_mean": float(var.mean()), "fwd_var_mean": float(var_f.mean()),
            "inv_mu_norm": float(np.linalg.norm(mu)), "fwd_mu_norm": float(np.linalg.norm(mu_f)),
            "inv_rms": float(np.sqrt((mu * mu + var).mean())), "fwd_rms": float(np.sqrt((mu_f * mu_f + var_f).mean()))}


def _to_eval(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """Decoded uint8 images (n x H x W x 3) as the teacher check reads them: resized to the evaluation resolution."""
    from PIL import Image

    out = []
    for img in images:
        im = Image.fromarray(img)
        if im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.LANCZOS)
        arr = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
        out.append(arr if arr.ndim == 3 else arr[..., None])
    return np.stack(out)


def diagnose_class(gaussian: str, pipeline: str, teacher: str, out: str, cls: str, label: int, timestep: int, guidance: float, num_steps: int, roundtrip_images: int, image_sets: list[str],
                   resolution: int, channels: int, device: Any, model_precision: str):
    """The class's diagnostics (module docstring) -> JSON. image_sets: "name:folder" of the class's image folders
    whose teacher top-1 is reported; `label`: the class's label (the DiT's and the teacher's, as in the teacher check).
    The teacher runs on the CPU, as in the teacher check (a few images per set)."""
    import torch

    from .data import list_images, load_image
    from .ddim import timestep_grid
    from .decode import decode_latents
    from .device import model_dtype
    from .models import load_ldm
    from .nets import load_classifier, logits

    with open_h5(gaussian, "Gaussian") as f:
        attrs = read_attrs(f)
        if f"t{timestep}" not in f:
            raise D3HRError(f"{gaussian}: no Gaussian at timestep {timestep} (select.timestep)")
        if "alpha_bar" not in f:
            raise D3HRError(f"{gaussian}: no alpha_bar (made by an older inversion: rerun invert)")
        g = f[f"t{timestep}"]
        mu, var = g["mean"][:], g["var"][:]
        ref = g["reference"][:].astype(np.float32) if "reference" in g else None
        mu0, var0 = f["latent/mean"][:], f["latent/var"][:]
        alpha_bar = float(f["alpha_bar"][f["timesteps"][:].tolist().index(timestep)])
    check_finite(np.stack([mu, var, mu0, var0]), gaussian, f"t{timestep}")
    shape = tuple(attrs["latent_shape"])
    row = {"cls": cls, "timestep": int(timestep), **moment_stats(mu, var, mu0, var0, alpha_bar)}

    ldm = load_ldm(pipeline, device=device, dtype=model_dtype(device, model_precision))
    net, _ = load_classifier(teacher)
    grid = timestep_grid(ldm.num_train_timesteps, num_steps)

    def probs(x_uint8):
        with torch.no_grad():
            p = torch.softmax(logits(net, x_uint8, batch=256).float(), 1).numpy()
        return p.argmax(1), p[:, int(label)]

    def decode(z):
        imgs = decode_latents(ldm, z.reshape(len(z), *shape).astype(np.float32), timestep, int(label), grid, guidance)
        return _to_eval(imgs, resolution, channels)

    if ref is not None and roundtrip_images > 0:
        pred, _ = probs(decode(ref[:roundtrip_images]))
        row |= {"roundtrip_images": int(len(pred)), "roundtrip_top1": float((pred == int(label)).mean())}
    else:
        row |= {"roundtrip_images": 0, "roundtrip_top1": None}
    pred, p = probs(decode((np.sqrt(alpha_bar) * mu0)[None]))  # the class's forward-noised mean, k = 1
    row |= {"fwd_mean_correct": bool(pred[0] == int(label)), "fwd_mean_prob": float(p[0])}
    for spec in image_sets:
        name, _, folder = spec.partition(":")
        files = list_images(folder)
        if not files:
            raise D3HRError(f"{folder}: no images of {name} to score")
        pred, _ = probs(np.stack([load_image(fi, resolution, channels) for fi in files]))
        row[f"top1:{name}"] = float((pred == int(label)).mean())
    print(f"[d3hr] {cls}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
          file=sys.stderr)
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(row, indent=1) + "\n")
    return row


def diagnostics_frame(files: list[str]):
    """The classes' JSONs as one DataFrame, with an "all classes" row: means over the classes (top-1s: over the
    classes' images, equal counts per class)."""
    import pandas as pd

    rows = [json.loads(Path(f).read_text()) for f in files]
    if not rows:
        raise D3HRError("no class diagnostics to tabulate")
    df = pd.DataFrame(rows)
    num = df.drop(columns=["cls"]).apply(pd.to_numeric, errors="coerce")
    mean = num.mean(numeric_only=True)
    return pd.concat([df, pd.DataFrame([{"cls": "all classes", **mean.to_dict()}])], ignore_index=True)


def diagnostics_table(files: list[str], out_csv: str, out_md: str):
    """tables/diagnostics.{csv,md}: every class's diagnostics and their means."""
    df = diagnostics_frame(files)
    with atomic_output(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    sets = [c for c in df.columns if c.startswith("top1:")]
    cols = ["cls", "inv_var_mean", "fwd_var_mean", "inv_mu_norm", "fwd_mu_norm", "inv_rms", "fwd_rms",
            "roundtrip_top1", "fwd_mean_correct"] + sets
    head = ["class", "var inv", "var fwd", "‖mu‖ inv", "‖mu‖ fwd", "rms inv", "rms fwd", "round trip",
            "fwd mean ok"] + [c.removeprefix("top1:") for c in sets]

    def cell(c, v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if c == "fwd_mean_correct" or c == "roundtrip_top1" or c.startswith("top1:"):
            return f"{100 * float(v):.0f}%"
        return f"{float(v):.3f}"

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(r["cls"])] + [cell(c, r[c]) for c in cols[1:]]) + " |" for _, r in df.iterrows()]
    t = int(df.timestep.iloc[0])
    lines += ["", f"At the selection timestep t = {t} (alpha_bar {df.alpha_bar.iloc[0]:.4f}): the inverted latents' Gaussian "
              "(inv) against the forward process of the same images (fwd: mean sqrt(a) mu_0, variance a var_0 + 1 - a, "
              "exact); var: mean per-dimension variance; rms: sqrt(mean(mu^2 + var)). Round trip: the teacher's top-1 "
              "on real inverted latents decoded from t; fwd mean ok: the class's forward-noised mean, decoded (one image), "
              "is recognised (over classes: the share). The other columns: the teacher's top-1 on each set's images of "
              "the class (d3hr/diagnostics.py)."]
    with atomic_output(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return df
