"""`d3hr <stage> ...`: one subcommand per stage; the Snakemake rules call these."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import D3HRError, __version__


def _threads(n):
    import torch

    if n:
        torch.set_num_threads(int(n))


def cmd_export_embedded(a):
    from .data import export_embedded_class

    for cls in a.classes:
        counts = export_embedded_class(a.name, cls, a.out, a.val_per_class, a.seed, a.resolution)
        print(f"[d3hr] exported {a.name}/{cls}: {counts}", file=sys.stderr)


def cmd_train_ldm(a):
    from .train import train_models

    _threads(a.threads)
    train_models(a.root, a.classes, a.out, a.resolution, a.channels, json.loads(a.vae), json.loads(a.dit), a.seed)


def cmd_train_teacher(a):
    from .data import load_split
    from .nets import create_classifier, save_classifier
    from .train import accuracy, train_classifier

    _threads(a.threads)
    x, y = load_split(a.root, "train", a.classes, a.resolution, a.channels)
    model = create_classifier(a.arch, len(a.classes), a.channels, small_input=True, resolution=a.resolution)
    t0 = time.time()
    train_classifier(model, x, y, a.epochs, a.batch_size, a.lr, a.weight_decay, a.seed)
    xv, yv = load_split(a.root, "val", a.classes, a.resolution, a.channels)
    acc = accuracy(model, xv, yv)
    print(f"[d3hr] teacher {a.arch}: val top-1 {acc:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    save_classifier(a.out, model, {"arch": a.arch, "num_classes": len(a.classes), "in_chans": a.channels,
                                   "small_input": True, "resolution": a.resolution, "classes": a.classes,
                                   "val_top1": acc, "train_seconds": time.time() - t0})


def cmd_quality(a):
    from .h5io import atomic_output
    from .train import model_quality

    _threads(a.threads)
    q, imgs, labels = model_quality(a.pipeline, a.teacher, a.root, a.classes, a.resolution, a.channels,
                                    a.samples_per_class, a.guidance, a.num_steps, a.seed)
    for name in ("train_log.json",):
        p = Path(a.pipeline) / name
        if p.is_file():
            q.update(json.loads(p.read_text()))
    import torch

    ckpt = torch.load(a.teacher, map_location="cpu", weights_only=False)
    q["teacher_arch"] = ckpt["arch"]
    q["teacher_train_seconds"] = round(ckpt.get("train_seconds", float("nan")), 1)
    with atomic_output(a.out) as tmp:
        tmp.write_text(json.dumps(q, indent=1))
    if a.samples:  # one row of samples per class
        import numpy as np
        from PIL import Image

        k = a.samples_per_class
        grid = np.concatenate([np.concatenate(list(imgs[i * k:(i + 1) * k]), axis=1) for i in range(len(a.classes))], axis=0)
        with atomic_output(a.samples) as tmp:
            Image.fromarray(grid if grid.shape[-1] == 3 else grid[..., 0]).save(tmp, format="PNG")
    print(json.dumps(q, indent=1), file=sys.stderr)


def cmd_encode(a):
    from .encode import encode_class
    from .models import pick_device

    _threads(a.threads)
    n = encode_class(a.class_dir, a.pipeline, a.out, a.resolution, a.channels, a.batch_size, not a.posterior_mean,
                     a.seed, pick_device(a.device))
    print(f"[d3hr] encoded {n} images -> {a.out}", file=sys.stderr)


def cmd_invert(a):
    from .invert import invert_class
    from .models import pick_device

    _threads(a.threads)
    invert_class(a.latents, a.pipeline, a.out, a.cls, a.label, a.timesteps, a.num_steps, a.guidance, a.batch_size,
                 pick_device(a.device))


def cmd_fit_gaussian(a):
    from .gaussian import fit_class

    fit_class(a.inverted, a.latents, a.out)


def cmd_select(a):
    from .select import Weights, select_class

    sel = select_class(a.gaussian, a.out, a.ipc, a.m, a.timestep, a.seed, Weights(a.l_mu, a.l_sigma, a.l_skew),
                       a.skew_mode, a.chunk_groups, a.threads)
    print(f"[d3hr] best score {sel.score:.4f} (random group {sel.random_score:.4f}) -> {a.out}", file=sys.stderr)


def cmd_summarize_selection(a):
    from .h5io import atomic_output
    from .select import summarize

    with atomic_output(a.out) as tmp:
        summarize(a.selected).to_csv(tmp, index=False)


def cmd_decode(a):
    from .decode import decode_class
    from .models import pick_device

    _threads(a.threads)
    decode_class(a.selected, a.pipeline, a.out, a.guidance, a.num_steps, a.resize or None, a.batch_size,
                 device=pick_device(a.device))


def build_parser():
    p = argparse.ArgumentParser(prog="d3hr", description=__doc__)
    p.add_argument("--version", action="version", version=f"d3hr {__version__}")
    sub = p.add_subparsers(dest="stage", required=True)

    def stage(name, fn, help):
        s = sub.add_parser(name, help=help)
        s.set_defaults(fn=fn)
        s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        return s

    s = stage("export-embedded", cmd_export_embedded, "export classes of an embedded dataset to image folders")
    s.add_argument("--name", default="animal_mnist")
    s.add_argument("--classes", nargs="+", required=True)
    s.add_argument("--out", required=True, help="dataset root: writes {out}/{train,val}/{class}/")
    s.add_argument("--val-per-class", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resolution", type=int, default=32)

    def data_args(s):
        s.add_argument("--root", required=True, help="image-folder dataset root ({root}/{split}/{class}/)")
        s.add_argument("--classes", nargs="+", required=True)
        s.add_argument("--resolution", type=int, required=True)
        s.add_argument("--channels", type=int, default=3)
        s.add_argument("--seed", type=int, default=0)

    s = stage("train-ldm", cmd_train_ldm, "train a small VAE + DiT and save a DiTPipeline directory")
    data_args(s)
    s.add_argument("--out", required=True)
    s.add_argument("--vae", default="{}", help="JSON: steps, batch_size, lr, kl_weight, block_out_channels")
    s.add_argument("--dit", default="{}", help="JSON: steps, batch_size, lr, ema_decay, dit_kwargs")

    s = stage("train-teacher", cmd_train_teacher, "train the teacher classifier on the training split")
    data_args(s)
    s.add_argument("--out", required=True)
    s.add_argument("--arch", default="resnet_tiny")
    s.add_argument("--epochs", type=int, default=5)
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--lr", type=float, default=2e-3)
    s.add_argument("--weight-decay", type=float, default=0.01)

    s = stage("quality", cmd_quality, "VAE PSNR, teacher top-1, teacher top-1 on DiT samples -> JSON")
    data_args(s)
    s.add_argument("--pipeline", required=True)
    s.add_argument("--teacher", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--samples", default=None, help="PNG file for a grid of the DiT samples (a row per class)")
    s.add_argument("--samples-per-class", type=int, default=20)
    s.add_argument("--guidance", type=float, default=4.0)
    s.add_argument("--num-steps", type=int, default=50)

    def model_args(s):
        s.add_argument("--pipeline", required=True, help="DiTPipeline directory")
        s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        s.add_argument("--batch-size", type=int, default=256)

    s = stage("encode", cmd_encode, "VAE latents of one class folder -> HDF5")
    model_args(s)
    s.add_argument("--class-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--channels", type=int, default=3)
    s.add_argument("--posterior-mean", action="store_true", help="encode with the posterior mean instead of a sample")
    s.add_argument("--seed", type=int, default=0)

    s = stage("invert", cmd_invert, "DDIM inversion with CFG of one class's latents -> HDF5")
    model_args(s)
    s.add_argument("--latents", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--cls", required=True)
    s.add_argument("--label", type=int, required=True, help="the model's label index of the class")
    s.add_argument("--timesteps", type=int, nargs="+", required=True)
    s.add_argument("--num-steps", type=int, default=50)
    s.add_argument("--guidance", type=float, default=4.0)

    s = stage("fit-gaussian", cmd_fit_gaussian, "per-dimension Gaussian + normality stats -> HDF5")
    s.add_argument("--inverted", required=True)
    s.add_argument("--latents", required=True)
    s.add_argument("--out", required=True)

    s = stage("select", cmd_select, "group sampling -> HDF5")
    s.add_argument("--gaussian", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--ipc", type=int, required=True)
    s.add_argument("--m", type=int, default=100_000)
    s.add_argument("--timestep", type=int, default=600)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--l-mu", type=float, default=1.0)
    s.add_argument("--l-sigma", type=float, default=1.0)
    s.add_argument("--l-skew", type=float, default=0.5)
    s.add_argument("--skew-mode", choices=["paper", "code"], default="paper")
    s.add_argument("--chunk-groups", type=int, default=10_000)

    s = stage("summarize-selection", cmd_summarize_selection, "one CSV row per selected file")
    s.add_argument("selected", nargs="+")
    s.add_argument("--out", required=True)

    s = stage("decode", cmd_decode, "DDIM from the selected latents + VAE decode -> PNGs")
    model_args(s)
    s.add_argument("--selected", required=True)
    s.add_argument("--out", required=True, help="output folder of PNGs")
    s.add_argument("--guidance", type=float, default=None, help="default: the guidance of the inversion")
    s.add_argument("--num-steps", type=int, default=None)
    s.add_argument("--resize", type=int, default=0)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.time()
    try:
        args.fn(args)
    except D3HRError as e:
        print(f"d3hr {args.stage}: error: {e}", file=sys.stderr)
        return 2
    print(f"[d3hr] {args.stage} done in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
