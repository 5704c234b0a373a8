"""`d3hr <stage> ...`: one subcommand per stage; the Snakemake rules call these."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import D3HRError, __version__, code_version
from .device import PRECISIONS  # torch-free: the parser imports no torch


def _threads(n):
    import torch

    if n:
        torch.set_num_threads(int(n))


def _weights(a):
    """The group-sampling score's weights (docs/method.md eq. 4.1) from --l-mu, --l-sigma, --l-skew."""
    from .group_sampling import Weights

    return Weights(mu=a.l_mu, sigma=a.l_sigma, skew=a.l_skew)


def cmd_export_embedded(a):
    from .data import export_embedded_class

    for cls in a.classes:
        counts = export_embedded_class(name=a.name, cls=cls, out_root=a.out, val_per_class=a.val_per_class, seed=a.seed,
                                       resolution=a.resolution)
        print(f"[d3hr] exported {a.name}/{cls}: {counts}", file=sys.stderr)


def cmd_train_ldm(a):
    from .train import train_models

    _threads(a.threads)
    train_models(root=a.root, classes=a.classes, out_dir=a.out, resolution=a.resolution, channels=a.channels,
                 vae_cfg=json.loads(a.vae), dit_cfg=json.loads(a.dit), seed=a.seed)


def cmd_train_teacher(a):
    from .data import load_split
    from .nets import create_classifier, save_classifier
    from .train import accuracy, train_classifier

    _threads(a.threads)
    x, y = load_split(a.root, "train", classes=a.classes, resolution=a.resolution, channels=a.channels)
    model = create_classifier(a.arch, num_classes=len(a.classes), in_chans=a.channels, small_input=True,
                              resolution=a.resolution, seed=a.seed)
    t0 = time.time()
    train_classifier(model, x, y, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                     seed=a.seed, precision=a.precision)
    xv, yv = load_split(a.root, "val", classes=a.classes, resolution=a.resolution, channels=a.channels)
    acc = accuracy(model, xv, yv)
    print(f"[d3hr] teacher {a.arch}: val top-1 {acc:.4f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    save_classifier(a.out, model, {"arch": a.arch, "num_classes": len(a.classes), "in_chans": a.channels,
                                   "small_input": True, "resolution": a.resolution, "classes": a.classes,
                                   "val_top1": acc, "train_seconds": time.time() - t0})


def cmd_import_classifier(a):
    from .data import list_classes
    from .nets import import_classifier

    classes = None
    if a.classes_from:
        classes = list_classes(a.classes_from)
        if len(classes) != a.num_classes:
            raise D3HRError(f"{a.classes_from}: {len(classes)} class folders, but --num-classes is {a.num_classes}")
    import_classifier(a.weights, a.out, arch=a.arch, num_classes=a.num_classes, resolution=a.resolution, classes=classes,
                      input_norm=a.input_norm)
    print(f"[d3hr] {a.weights} -> {a.out} ({a.arch}, {a.num_classes} classes, input norm {a.input_norm})",
          file=sys.stderr)


def cmd_quality(a):
    from .h5io import atomic_output
    from .train import model_quality

    _threads(a.threads)
    q, imgs, labels = model_quality(pipeline_dir=a.pipeline, teacher_path=a.teacher, root=a.root, classes=a.classes,
                                    resolution=a.resolution, channels=a.channels,
                                    samples_per_class=a.samples_per_class, guidance=a.guidance,
                                    num_steps=a.num_steps, seed=a.seed)
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
    from .device import pick_device

    _threads(a.threads)
    n = encode_class(a.class_dir, a.pipeline, a.out, resolution=a.resolution, channels=a.channels,
                     batch_size=a.batch_size, sample_posterior=not a.posterior_mean, seed=a.seed,
                     device=pick_device(a.device), on_bad_image=a.on_bad_image)
    print(f"[d3hr] encoded {n} images -> {a.out}", file=sys.stderr)


def cmd_invert(a):
    from .invert import invert_class
    from .device import pick_device

    _threads(a.threads)
    invert_class(a.latents, a.pipeline, a.out, cls=a.cls, label=a.label, keep_timesteps=a.timesteps,
                 num_steps=a.num_steps, guidance=a.guidance, batch_size=a.batch_size, device=pick_device(a.device))


def cmd_fit_gaussian(a):
    from .gaussian import fit_class

    fit_class(inverted_h5=a.inverted, latents_h5=a.latents, out=a.out)


def cmd_select(a):
    from .group_sampling import select_class

    sel = select_class(a.gaussian, a.out, ipc=a.ipc, m=a.m, timestep=a.timestep, seed=a.seed, weights=_weights(a),
                       skew_mode=a.skew_mode, chunk_groups=a.chunk_groups, threads=a.threads or 1)
    print(f"[d3hr] best score {sel.score:.4f} (random group {sel.random_score:.4f}) -> {a.out}", file=sys.stderr)


def cmd_summarize_selection(a):
    from .h5io import atomic_output
    from .group_sampling import summarize

    with atomic_output(a.out) as tmp:
        summarize(a.selected).to_csv(tmp, index=False)


def cmd_baseline_real(a):
    from .baselines import random_real
    from .images import save_pngs

    imgs = random_real(Path(a.class_dir), ipc=a.ipc, seed=a.seed, resolution=a.resolution, channels=a.channels)
    save_pngs(imgs, a.out, prefix=Path(a.class_dir).name.replace(" ", "_"))


def cmd_baseline_noise(a):
    from .baselines import noise_latents
    from .models import load_ldm

    ldm = load_ldm(a.pipeline, components=())
    ldm.check_label(a.cls, a.label)
    noise_latents(a.out, cls=a.cls, label=a.label, ipc=a.ipc, seed=a.seed,
                  latent_shape=(ldm.latent_channels, ldm.latent_size, ldm.latent_size), num_steps=a.num_steps,
                  guidance=a.guidance)


def cmd_baseline_kmeans(a):
    from .baselines import kmeans_latents

    abar, label = None, -1
    if a.timestep >= 0:  # D4M: noised to the timestep, denoised by the DiT in `decode` (kmeans_vae: no torch)
        from .models import load_ldm

        ldm = load_ldm(a.pipeline, components=())
        abar, label = ldm.alphas_cumprod, ldm.check_label(a.cls, a.label)
    kmeans_latents(a.latents, a.out, ipc=a.ipc, seed=a.seed, timestep=a.timestep, alphas_cumprod=abar, label=label,
                   num_steps=a.num_steps, guidance=a.guidance)


def cmd_prepare_val(a):
    from .valset import prepare_val

    if len(a.val_dirs) != len(a.labels):
        raise D3HRError("--val-dirs and --labels must have one entry per class")
    prepare_val(a.val_dirs, a.labels, resolution=a.resolution, channels=a.channels, crop=a.crop, out=a.out,
                classes=a.classes)


def cmd_evaluate(a):
    import tempfile

    import numpy as np

    from .archs import student_lr
    from .device import pick_device
    from .evaluate import authors_batch_size, budget_steps, load_image_set, train_student
    from .h5io import atomic_output, open_h5, read_attrs
    from .nets import create_classifier, load_classifier

    _threads(a.threads)
    if len(a.class_dirs) != len(a.labels):
        raise D3HRError("--class-dirs and --labels must have one entry per class")
    lr = student_lr(a.student, a.lr)  # before any image is read: an unknown rate fails at once
    teacher, ck = load_classifier(a.teacher)
    if max(a.labels) >= ck["num_classes"]:
        raise D3HRError(f"{a.teacher}: the teacher has {ck['num_classes']} classes, but label {max(a.labels)} is used")
    with open_h5(a.val, "validation") as f:
        val_attrs = read_attrs(f)
    for key, want in (("resolution", a.resolution), ("channels", a.channels), ("labels", list(a.labels))):
        got = val_attrs.get(key)
        if (list(map(int, got)) if key == "labels" and got is not None else got) != want:
            raise D3HRError(f"{a.val}: the validation file has {key} {got}, this job {want}; rerun prepare-val")
    device = pick_device(a.device)
    with tempfile.TemporaryDirectory(prefix="d3hr-eval-") as spill:  # a large set is streamed through a uint8 HDF5
        x, y = load_image_set(a.class_dirs, a.labels, resolution=a.resolution, channels=a.channels,
                              spill=Path(spill) / "train.h5", device=device)
        if len(x) == 0:
            raise D3HRError(f"no training images in {a.class_dirs[0]} and the other --class-dirs")
        # the 3x3-stem ("modified") variant for small images (CIFAR-style), the standard stem from 64 px up (ImageNet)
        student = create_classifier(a.student, num_classes=ck["num_classes"], in_chans=a.channels,
                                    small_input=a.resolution <= 64, resolution=a.resolution, seed=a.seed)
        n_train = len(x)
        batch_size = a.batch_size or authors_batch_size(a.ipc, len(a.labels), n_train)
        steps = a.steps or budget_steps(n_train, batch_size, a.epochs)
        try:
            res = train_student(student, None if a.hard_label else teacher, x, y, a.val, steps=steps,
                                batch_size=batch_size, lr=lr, weight_decay=a.weight_decay, seed=a.seed, mix=a.mix,
                                temperature=a.temperature or None, hard_label=a.hard_label,
                                epochs=None if a.steps else a.epochs, device=device, schedule=a.schedule,
                                precision=a.precision)
        finally:
            if not isinstance(x, np.ndarray) and hasattr(x, "file"):
                x.file.close()
    res.update(method=a.method, ipc=a.ipc, student=a.student, seed=a.seed, n_train_images=n_train,
               n_val_images=int(val_attrs.get("n_images", 0)), steps=steps, epochs=None if a.steps else a.epochs,
               batch_size=batch_size, lr=lr, weight_decay=a.weight_decay, mix=a.mix, hard_label=a.hard_label,
               teacher=str(a.teacher), teacher_arch=ck["arch"], val_crop=val_attrs.get("crop"),
               code_version=code_version("evaluate"))
    with atomic_output(a.out) as tmp:
        tmp.write_text(json.dumps(res, indent=1))
    print(f"[d3hr] {a.method} ipc {a.ipc} {a.student} seed {a.seed}: top-1 {res['top1']:.4f} "
          f"(best of the last evaluations {res['top1_best_last']:.4f}) on {res['device']}", file=sys.stderr)


def cmd_collect_eval(a):
    from .h5io import atomic_output
    from .tables import collect

    with atomic_output(a.out) as tmp:
        collect(a.files).to_csv(tmp, index=False)


def cmd_tables(a):
    from .tables import write_tables

    write_tables(a.csvs, a.out_dir)


def cmd_decode(a):
    from .decode import decode_class
    from .device import pick_device

    _threads(a.threads)
    decode_class(a.selected, a.pipeline, a.out, guidance=a.guidance, num_steps=a.num_steps, resize=a.resize or None,
                 batch_size=a.batch_size, dataset=a.latents_name, device=pick_device(a.device), start=a.start)


def cmd_ablation_timestep(a):
    from .ablation import timestep_ablation_class
    from .device import pick_device

    _threads(a.threads)
    rows = timestep_ablation_class(a.gaussian, a.pipeline, a.teacher, a.out, ipc=a.ipc, m=a.m, seed=a.seed,
                                   weights=_weights(a), skew_mode=a.skew_mode, chunk_groups=a.chunk_groups,
                                   guidance=a.guidance, num_steps=a.num_steps, batch_size=a.batch_size,
                                   threads=a.threads or 1, device=pick_device(a.device), timesteps=a.timesteps)
    for t, score, top1 in rows:
        print(f"[d3hr] t={t}: best score {score:.4f}, teacher top-1 {top1:.3f}", file=sys.stderr)


def cmd_ablation_variant(a):
    from .device import pick_device
    from .variants import variant_class

    _threads(a.threads)
    variant_class(a.latents, a.gaussian, a.pipeline, a.out, ipc=a.ipc, seed=a.seed, timestep=a.timestep, m=a.m,
                  weights=_weights(a), skew_mode=a.skew_mode, chunk_groups=a.chunk_groups, decode_guidance=a.guidance,
                  decode_start=a.start, invert_guidance=a.invert_guidance, batch_size=a.batch_size,
                  device=pick_device(a.device), threads=a.threads or 1)


def cmd_ablation_table(a):
    from .variants import ablation_table

    ablation_table(a.evals, variants=json.loads(a.variants), out_csv=a.csv, out_md=a.md, png=a.png, pdf=a.pdf)


def cmd_fig_normality(a):
    from .figures import plot_normality

    plot_normality(a.gaussian, latents_h5=a.qq_latents, inverted_h5=a.qq_inverted, timestep=a.timestep, png=a.png,
                   pdf=a.pdf, table_csv=a.table, qq_csv=a.qq_csv, n_dims=a.qq_dims)


def cmd_fig_accuracy(a):
    from .figures import plot_accuracy_vs_ipc

    plot_accuracy_vs_ipc(a.accuracy, png=a.png, pdf=a.pdf, data_csv=a.data)


def cmd_fig_timestep(a):
    from .figures import plot_timestep

    plot_timestep(a.ablation, main_timestep=a.timestep, png=a.png, pdf=a.pdf, data_csv=a.data)


def cmd_fig_group_sampling(a):
    from .figures import plot_group_sampling

    plot_group_sampling(a.selected, png=a.png, pdf=a.pdf, curve_csv=a.curve, summary_csv=a.summary,
                        accuracy_csv=a.accuracy)


def cmd_fig_samples(a):
    from .figures import plot_samples

    dirs = {m: [str(Path(a.images_root) / m / f"ipc{a.ipc}" / c) for c in a.classes] for m in a.methods}
    plot_samples(dirs, png=a.png, pdf=a.pdf, data_csv=a.data, per_class=a.per_class)


def cmd_fig_storage(a):
    from .figures import plot_storage

    dirs = {(c, i): str(Path(a.images_root) / f"ipc{i}" / c) for i in a.ipcs for c in a.classes}
    plot_storage(a.gaussian, dirs, png=a.png, pdf=a.pdf, table_csv=a.table)


def cmd_cost_table(a):
    from .tables import write_cost_table

    write_cost_table(a.files, root=a.root, n_classes=a.n_classes, csv=a.csv, md=a.md)


def cmd_teacher_table(a):
    from .tables import teacher_check_table, write_csv

    if len(a.labels) != len(a.classes):
        raise D3HRError("--labels must have one entry per class")
    sets = {(m, i): [str(Path(a.images_root) / m / f"ipc{i}" / c) for c in a.classes] for m in a.methods for i in a.ipcs}
    table = teacher_check_table(a.teacher, sets, labels=dict(zip(a.classes, a.labels)), resolution=a.resolution,
                                channels=a.channels)
    write_csv(table, a.out)


def cmd_features(a):
    from .device import pick_device
    from .metrics import real_features

    _threads(a.threads)
    shapes = real_features(a.class_dir, a.teacher, a.pipeline, a.out, resolution=a.resolution, channels=a.channels,
                           max_images=a.max_images, seed=a.seed, device=str(pick_device(a.device)))
    print(f"[d3hr] features of {a.class_dir}: {shapes}", file=sys.stderr)


def cmd_set_scores(a):
    from .device import pick_device
    from .h5io import atomic_output
    from .metrics import class_scores

    import pandas as pd

    _threads(a.threads)
    sets = [tuple(spec.split(":", 2)) for spec in a.sets]  # METHOD:IPC:FOLDER (the folder may hold colons)
    rows = class_scores(a.features, sets, a.teacher, a.pipeline, resolution=a.resolution, channels=a.channels, k=a.k,
                        device=str(pick_device(a.device)))
    with atomic_output(a.out) as tmp:
        pd.DataFrame(rows).assign(cls=a.cls).to_csv(tmp, index=False)


def cmd_representativeness(a):
    from .tables import write_representativeness

    write_representativeness(a.scores, accuracy_csv=a.accuracy, out_csv=a.csv, out_md=a.md, corr_csv=a.corr_csv,
                             corr_md=a.corr_md)


def cmd_fig_representativeness(a):
    from .figures import plot_representativeness

    plot_representativeness(a.csv, png=a.png, pdf=a.pdf)


def cmd_label_robust(a):
    from .tables import write_label_robust

    write_label_robust(a.csvs, csv=a.csv, md=a.md, w=a.weight)


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
    s.add_argument("--name", required=True)
    s.add_argument("--classes", nargs="+", required=True)
    s.add_argument("--out", required=True, help="dataset root: writes {out}/{train,val}/{class}/")
    s.add_argument("--val-per-class", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--resolution", type=int, required=True)

    def data_args(s):
        s.add_argument("--root", required=True, help="image-folder dataset root ({root}/{split}/{class}/)")
        s.add_argument("--classes", nargs="+", required=True)
        s.add_argument("--resolution", type=int, required=True)
        s.add_argument("--channels", type=int, required=True)
        s.add_argument("--seed", type=int, required=True)

    s = stage("train-ldm", cmd_train_ldm, "train a small VAE + DiT and save a DiTPipeline directory")
    data_args(s)
    s.add_argument("--out", required=True)
    s.add_argument("--vae", required=True, help="JSON: steps, batch_size, lr, kl_weight, block_out_channels")
    s.add_argument("--dit", required=True, help="JSON: steps, batch_size, lr, ema_decay, dit_kwargs")

    s = stage("train-teacher", cmd_train_teacher, "train the teacher classifier on the training split")
    data_args(s)
    s.add_argument("--out", required=True)
    s.add_argument("--arch", required=True)
    s.add_argument("--epochs", type=int, required=True)
    s.add_argument("--batch-size", type=int, required=True)
    s.add_argument("--lr", type=float, required=True)
    s.add_argument("--weight-decay", type=float, required=True)
    s.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="autocast of the training steps: auto = bf16 where the CPU computes it natively, else fp32")

    s = stage("import-classifier", cmd_import_classifier,
              "a teacher checkpoint from torchvision/timm weights (e.g. ImageNet ResNet-18), with its input norm")
    s.add_argument("--weights", required=True, help="a state dict file (torchvision's resnet18-f37072fd.pth, ...)")
    s.add_argument("--arch", default="resnet18", help="timm architecture whose keys the state dict has")
    s.add_argument("--num-classes", type=int, default=1000)
    s.add_argument("--resolution", type=int, default=224)
    s.add_argument("--input-norm", choices=("imagenet", "none"), default="imagenet",
                   help="imagenet: the weights expect ImageNet mean/std normalisation (torchvision, timm)")
    s.add_argument("--classes-from", default=None, help="a train/ folder: records its sorted class folders")
    s.add_argument("--out", required=True)

    def precision_arg(s):
        s.add_argument("--model-precision", choices=PRECISIONS, default="auto",
                       help="weights of the VAE and the DiT: auto = bf16 where the device computes it natively, else fp32")

    s = stage("quality", cmd_quality, "VAE PSNR, teacher top-1, teacher top-1 on DiT samples -> JSON")
    data_args(s)
    s.add_argument("--pipeline", required=True)
    s.add_argument("--teacher", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--samples", default=None, help="PNG file for a grid of the DiT samples (a row per class)")
    s.add_argument("--samples-per-class", type=int, required=True)
    s.add_argument("--guidance", type=float, required=True)
    s.add_argument("--num-steps", type=int, required=True)
    precision_arg(s)

    def model_args(s):
        s.add_argument("--pipeline", required=True, help="DiTPipeline directory")
        s.add_argument("--device", required=True, choices=["auto", "cpu", "cuda"])
        s.add_argument("--batch-size", type=int, required=True)
        precision_arg(s)

    s = stage("encode", cmd_encode, "VAE latents of one class folder -> HDF5")
    model_args(s)
    s.add_argument("--class-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--channels", type=int, required=True)
    s.add_argument("--posterior-mean", action="store_true", help="encode with the posterior mean instead of a sample")
    s.add_argument("--on-bad-image", choices=["error", "skip"], required=True,
                   help="an unreadable image fails the job (default) or is skipped with a warning and counted")
    s.add_argument("--seed", type=int, required=True)

    s = stage("invert", cmd_invert, "DDIM inversion with CFG of one class's latents -> HDF5")
    model_args(s)
    s.add_argument("--latents", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--cls", required=True)
    s.add_argument("--label", type=int, required=True, help="the model's label index of the class")
    s.add_argument("--timesteps", type=int, nargs="+", required=True)
    s.add_argument("--num-steps", type=int, required=True)
    s.add_argument("--guidance", type=float, required=True)

    s = stage("fit-gaussian", cmd_fit_gaussian, "per-dimension Gaussian + normality stats -> HDF5")
    s.add_argument("--inverted", required=True)
    s.add_argument("--latents", required=True)
    s.add_argument("--out", required=True)

    def group_args(s):  # group sampling (docs/method.md §4): m candidate groups, the score's weights, seed
        s.add_argument("--m", type=int, required=True)
        s.add_argument("--seed", type=int, required=True)
        s.add_argument("--l-mu", type=float, required=True)
        s.add_argument("--l-sigma", type=float, required=True)
        s.add_argument("--l-skew", type=float, required=True)
        s.add_argument("--skew-mode", choices=["paper", "code"], required=True)
        s.add_argument("--chunk-groups", type=int, required=True)

    s = stage("select", cmd_select, "group sampling -> HDF5")
    s.add_argument("--gaussian", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--ipc", type=int, required=True)
    group_args(s)
    s.add_argument("--timestep", type=int, required=True)

    s = stage("summarize-selection", cmd_summarize_selection, "one CSV row per selected file")
    s.add_argument("selected", nargs="+")
    s.add_argument("--out", required=True)

    s = stage("decode", cmd_decode, "DDIM from the selected latents + VAE decode -> PNGs")
    model_args(s)
    s.add_argument("--selected", required=True)
    s.add_argument("--out", required=True, help="output folder of PNGs")
    s.add_argument("--guidance", type=float, required=True, help="CFG scale of decoding")
    s.add_argument("--num-steps", type=int, required=True, help="DDIM grid of the sampling (the inversion's)")
    s.add_argument("--resize", type=int, required=True)
    s.add_argument("--latents-name", required=True, help="dataset to decode ('random_latents': one random draw)")
    s.add_argument("--start", required=True, choices=["inverted", "above"],
                   help="start at the latent's timestep (paper) or one grid step above it (authors' code)")

    s = stage("baseline-real", cmd_baseline_real, "IPC random real images of one class -> PNGs")
    s.add_argument("--class-dir", required=True)
    s.add_argument("--ipc", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--channels", type=int, required=True)
    s.add_argument("--out", required=True)

    s = stage("baseline-noise", cmd_baseline_noise, "pure-noise latents for plain DiT sampling -> HDF5")
    s.add_argument("--pipeline", required=True)
    s.add_argument("--cls", required=True)
    s.add_argument("--label", type=int, required=True)
    s.add_argument("--ipc", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--num-steps", type=int, required=True)
    s.add_argument("--guidance", type=float, required=True)
    s.add_argument("--out", required=True)

    s = stage("baseline-kmeans", cmd_baseline_kmeans, "K-means centroids of VAE latents -> HDF5")
    s.add_argument("--latents", required=True)
    s.add_argument("--ipc", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--timestep", type=int, required=True,
                   help="noise the centroids to this timestep for DiT denoising (D4M); -1: VAE decode only")
    s.add_argument("--pipeline", help="the DiTPipeline (its noise schedule), with --timestep")
    s.add_argument("--cls", help="class name, with --timestep")
    s.add_argument("--label", type=int, required=True, help="the class's model label, with --timestep")
    s.add_argument("--num-steps", type=int, required=True)
    s.add_argument("--guidance", type=float, required=True)
    s.add_argument("--out", required=True)

    s = stage("prepare-val", cmd_prepare_val, "the validation split, once, as uint8 HDF5 (resized, centre-cropped)")
    s.add_argument("--val-dirs", nargs="+", required=True, help="one real validation folder per class")
    s.add_argument("--labels", type=int, nargs="+", required=True, help="label index of each class")
    s.add_argument("--classes", nargs="+", help="class names, recorded in the provenance")
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--channels", type=int, required=True)
    s.add_argument("--crop", type=float, required=True, help="< 1: resize to resolution / crop, centre-crop resolution")
    s.add_argument("--out", required=True)

    s = stage("evaluate", cmd_evaluate, "train a student on a distilled set with teacher soft labels -> JSON")
    s.add_argument("--class-dirs", nargs="+", required=True, help="one image folder per class (training set)")
    s.add_argument("--val", required=True, help="the validation split written by prepare-val (HDF5)")
    s.add_argument("--labels", type=int, nargs="+", required=True, help="label index of each class")
    s.add_argument("--teacher", required=True)
    s.add_argument("--student", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--ipc", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--channels", type=int, required=True)
    s.add_argument("--epochs", type=int, required=True, help="passes over the training set (the paper's budget)")
    s.add_argument("--steps", type=int, required=True, help="if > 0: this many optimiser steps instead of --epochs")
    s.add_argument("--batch-size", type=int, required=True, help="0: the authors' batch size by IPC")
    s.add_argument("--lr", type=float, required=True, help="0: the authors' AdamW rate of the student")
    s.add_argument("--weight-decay", type=float, required=True)
    s.add_argument("--schedule", choices=["authors", "cosine"], default="authors",
                   help="learning-rate factor: authors 1 -> 0.5 (quarter cosine), cosine 1 -> 0")
    s.add_argument("--mix", choices=["cutmix", "mixup"], required=True)
    s.add_argument("--temperature", type=float, required=True, help="0: 20 with CutMix, 4 with MixUp")
    s.add_argument("--hard-label", action="store_true")
    s.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="autocast of the forward passes: auto = bf16 where the hardware computes it natively")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], required=True)
    s.add_argument("--out", required=True)

    s = stage("collect-eval", cmd_collect_eval, "evaluation JSON files -> one tidy CSV")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", required=True)

    s = stage("tables", cmd_tables, "tidy CSVs -> accuracy.csv, accuracy.md, accuracy.tex")
    s.add_argument("csvs", nargs="+")
    s.add_argument("--out-dir", required=True)

    def feature_args(s):  # the feature spaces of docs/method.md §7: the teacher's and the pipeline's VAE
        s.add_argument("--teacher", required=True)
        s.add_argument("--pipeline", required=True)
        s.add_argument("--resolution", type=int, required=True)
        s.add_argument("--channels", type=int, required=True)
        s.add_argument("--device", required=True)
        s.add_argument("--out", required=True)
        precision_arg(s)

    s = stage("features", cmd_features, "teacher and VAE features of one class's real images -> HDF5")
    feature_args(s)
    s.add_argument("--class-dir", required=True)
    s.add_argument("--max-images", type=int, required=True, help="0: all; else a seeded subsample")
    s.add_argument("--seed", type=int, required=True)

    s = stage("set-scores", cmd_set_scores, "MMD, coverage, diversity of one class's distilled sets -> CSV")
    feature_args(s)
    s.add_argument("--features", required=True, help="the class's real features (d3hr features)")
    s.add_argument("--sets", nargs="+", required=True, help="METHOD:IPC:FOLDER of each distilled set of the class")
    s.add_argument("--cls", required=True)
    s.add_argument("--k", type=int, required=True, help="coverage: the k of the real images' k-NN radius")

    s = stage("representativeness", cmd_representativeness,
              "per-class set scores + accuracy -> representativeness and metric-correlation tables")
    s.add_argument("scores", nargs="+")
    s.add_argument("--accuracy", required=True, help="tables/accuracy.csv")
    for flag in ("--csv", "--md", "--corr-csv", "--corr-md"):
        s.add_argument(flag, required=True)

    s = stage("fig-representativeness", cmd_fig_representativeness,
              "representativeness table -> the MMD x diversity figure")
    s.add_argument("--csv", required=True, help="tables/representativeness.csv")
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)

    s = stage("label-robust", cmd_label_robust, "soft- and hard-label runs -> HLR, IOR, LRS table")
    s.add_argument("csvs", nargs="+")
    s.add_argument("--weight", type=float, required=True, help="w of LRS's alpha = w IOR - (1 - w) HLR")
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)

    s = stage("ablation-variant", cmd_ablation_variant,
              "one class under one ablation variant: (re-invert,) select and decode IPC latents -> PNGs")
    model_args(s)
    s.add_argument("--latents", required=True, help="the class's VAE latents (re-inverted for --invert-guidance)")
    s.add_argument("--gaussian", required=True)
    s.add_argument("--out", required=True, help="output folder of PNGs")
    s.add_argument("--ipc", type=int, required=True)
    group_args(s)
    s.add_argument("--timestep", type=int, required=True)
    s.add_argument("--guidance", type=float, required=True, help="CFG scale of decoding")
    s.add_argument("--start", choices=["inverted", "above"], required=True)
    s.add_argument("--invert-guidance", type=float, required=True,
                   help="CFG scale of the inversion (a value other than the Gaussian file's re-inverts)")

    s = stage("ablation-table", cmd_ablation_table, "table + figure: student top-1 of the ablation variants")
    s.add_argument("evals", nargs="+", help="evaluation JSON files (variants and the methods beside them)")
    s.add_argument("--variants", required=True, help="JSON: {name: {setting: value}}")
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)

    s = stage("ablation-timestep", cmd_ablation_timestep,
              "inversion-timestep ablation of one class: select + decode at every kept timestep, teacher top-1 -> HDF5")
    model_args(s)
    s.add_argument("--gaussian", required=True)
    s.add_argument("--teacher", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--timesteps", type=int, nargs="+", required=True, help="kept timesteps of the file to select at")
    s.add_argument("--ipc", type=int, required=True)
    group_args(s)
    s.add_argument("--guidance", type=float, required=True, help="CFG scale of decoding")
    s.add_argument("--num-steps", type=int, required=True, help="DDIM grid of the sampling (the inversion's)")

    def fig_args(s, data=True):
        s.add_argument("--png", required=True)
        s.add_argument("--pdf", required=True)
        if data:
            s.add_argument("--data", required=True, help="CSV of the numbers the figure plots")

    s = stage("fig-normality", cmd_fig_normality, "figure: normality of VAE latents vs inverted latents")
    fig_args(s, data=False)
    s.add_argument("--gaussian", nargs="+", required=True, help="Gaussian files of every class")
    s.add_argument("--qq-latents", required=True, help="latents file of the class shown in the Q-Q plot")
    s.add_argument("--qq-inverted", required=True, help="inverted file of the same class")
    s.add_argument("--timestep", type=int, required=True)
    s.add_argument("--qq-dims", type=int, required=True)
    s.add_argument("--table", required=True, help="normality.csv")
    s.add_argument("--qq-csv", required=True)

    s = stage("fig-accuracy", cmd_fig_accuracy, "figure: student top-1 vs IPC per method and student")
    fig_args(s)
    s.add_argument("--accuracy", required=True, help="tables/accuracy.csv")

    s = stage("fig-timestep", cmd_fig_timestep, "figure: teacher top-1 on decoded images vs inversion timestep")
    fig_args(s)
    s.add_argument("--ablation", nargs="+", required=True, help="timestep-ablation files of every class")
    s.add_argument("--timestep", type=int, required=True, help="the main setting, marked in the figure")

    s = stage("fig-group-sampling", cmd_fig_group_sampling, "figure: best score vs m, score distribution, group vs random")
    fig_args(s, data=False)
    s.add_argument("--selected", nargs="+", required=True)
    s.add_argument("--accuracy", default=None, help="tables/accuracy.csv (adds d3hr vs d3hr_nogroup accuracy)")
    s.add_argument("--curve", required=True)
    s.add_argument("--summary", required=True)

    s = stage("fig-samples", cmd_fig_samples, "figure: distilled images per class and method")
    fig_args(s)
    s.add_argument("--images-root", required=True, help="results/{dataset}/images")
    s.add_argument("--methods", nargs="+", required=True)
    s.add_argument("--classes", nargs="+", required=True)
    s.add_argument("--ipc", type=int, required=True)
    s.add_argument("--per-class", type=int, required=True)

    s = stage("fig-storage", cmd_fig_storage, "figure + table: Gaussian parameters vs distilled images, bytes per class")
    fig_args(s, data=False)
    s.add_argument("--gaussian", nargs="+", required=True)
    s.add_argument("--images-root", required=True, help="results/{dataset}/images/d3hr")
    s.add_argument("--ipcs", type=int, nargs="+", required=True)
    s.add_argument("--classes", nargs="+", required=True)
    s.add_argument("--table", required=True, help="storage.csv")

    s = stage("cost-table", cmd_cost_table, "per-stage wall time and peak memory from benchmark files")
    s.add_argument("files", nargs="+")
    s.add_argument("--root", required=True, help="benchmarks/{dataset}")
    s.add_argument("--n-classes", type=int, required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)

    s = stage("teacher-table", cmd_teacher_table, "teacher top-1 on every distilled set -> CSV")
    s.add_argument("--teacher", required=True)
    s.add_argument("--images-root", required=True, help="results/{dataset}/images")
    s.add_argument("--methods", nargs="+", required=True)
    s.add_argument("--ipcs", nargs="+", required=True)
    s.add_argument("--classes", nargs="+", required=True)
    s.add_argument("--labels", type=int, nargs="+", required=True)
    s.add_argument("--resolution", type=int, required=True)
    s.add_argument("--channels", type=int, required=True)
    s.add_argument("--out", required=True)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.time()
    launched = os.environ.get("D3HR_LAUNCHED_AT")  # set by bench/job_overhead.py: a job's cost before its stage runs
    if launched:
        print(f"[d3hr] {args.stage} starts {t0 - float(launched):.3f} s after its launch", file=sys.stderr)
    if getattr(args, "model_precision", None):
        from .device import set_model_precision

        set_model_precision(args.model_precision)
    try:
        args.fn(args)
    except D3HRError as e:
        print(f"d3hr {args.stage}: error: {e}", file=sys.stderr)
        return 2
    print(f"[d3hr] {args.stage} done in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
