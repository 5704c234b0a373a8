"""Bytes of every stage's results for a config, computed from the config and the dataset's shape (nothing typed).

Each row is what the stage's code writes: float32 HDF5 datasets, float16 stored inverted latents, uint8 images. The
figures are upper bounds: HDF5 files are gzip-compressed (noise-like floats shrink little) and images are PNG files
(at most their raw uint8 pixels plus a header). The dataset's shape comes from its folders when they exist, else from
`--imagenet` (ILSVRC2012: 1,281,167 training images in 1,000 classes, 50 validation images a class) or the `--classes`
/ `--train-per-class` / `--val-per-class` given. The latent shape comes from the pipeline directory's configs when it
exists, from `train.vae` for `model: train`, else the SD VAE's (factor 8, 4 channels: DiT-XL/2).

    python bench/stage_bytes.py --configfile config/imagenet.yaml --imagenet
    python bench/stage_bytes.py --configfile config/config.yaml --classes 10 --train-per-class 900 --val-per-class 100
    python bench/stage_bytes.py ... --json bench/stage_bytes.json      # the rows as JSON too
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IMAGENET = {"classes": 1000, "train": 1_281_167, "val": 50_000}
HEAD = 100_000  # group scores kept per selected file (d3hr.group_sampling.select_group's `head`)


def latent_shape(ds: dict, config: dict) -> tuple[tuple[int, int, int], str]:
    """(c, h, w) of a latent and where it came from."""
    res = ds["resolution"]
    pipe = Path(str(ds.get("model", "")))
    if ds.get("model") == "train":
        vae = config["train"]["vae"]
        f = 2 ** (len(vae["block_out_channels"]) - 1)
        return (vae["latent_channels"], res // f, res // f), "train.vae"
    if (pipe / "vae" / "config.json").is_file():
        vae = json.loads((pipe / "vae" / "config.json").read_text())
        f = 2 ** (len(vae["block_out_channels"]) - 1)
        return (vae["latent_channels"], res // f, res // f), str(pipe / "vae" / "config.json")
    return (4, res // 8, res // 8), "SD VAE (factor 8, 4 channels), the pipeline directory is absent"


def dataset_shape(ds: dict, a) -> tuple[list[int], int, str]:
    """(training images per class, validation images, where from)."""
    root = Path(str(ds.get("root", "")))
    if a.imagenet:
        c = IMAGENET["classes"]
        base, extra = divmod(IMAGENET["train"], c)
        return [base + (k < extra) for k in range(c)], IMAGENET["val"], "ILSVRC2012's counts (--imagenet)"
    if a.classes:
        return [a.train_per_class] * a.classes, a.val_per_class * a.classes, "--classes, --train-per-class, --val-per-class"
    if (root / "train").is_dir():
        from d3hr.data import list_images

        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        if ds.get("classes", "all") != "all":
            classes = [c for c in classes if c in ds["classes"]]
        n = [len(list_images(root / "train" / c)) for c in classes]
        return n, sum(len(list_images(root / "val" / c)) for c in classes), str(root)
    raise SystemExit(f"{root}: no dataset there; give --imagenet or --classes/--train-per-class/--val-per-class")


def rows_for(name: str, ds: dict, config: dict, a) -> tuple[list[dict], dict]:
    n, n_val, source = dataset_shape(ds, a)
    shape, shape_source = latent_shape(ds, config)
    d = math.prod(shape)
    C = len(n)
    inv, sel, ev, fig = config["invert"], config["select"], config.get("evaluate", {}), config.get("figures", {})
    K = len(inv["keep_timesteps"])
    store_n = inv.get("store_classes")
    stored = list(range(C)) if store_n is None else list(range(min(store_n, C)))
    ipcs = sel["ipc"]
    res_out = ds.get("decode_resize") or ds["resolution"]
    px = res_out * res_out * ds.get("channels", 3)
    methods = ev.get("methods", [])
    image_methods = [m for m in methods if m not in ("full",)] + (["d3hr"] if "d3hr" not in methods else [])
    # at the selection timestep, where a job reads them: the covariance factor (d x rank, float32) and the reference
    # latents (float16)
    from d3hr.config import ablation_ipcs, structure_stored

    rank = min(inv["cov_rank"], d)
    on = structure_stored(config)
    structure = on * sum(min(rank, max(k - 1, 0)) * d * 4 + min(inv["reference_images"], k) * d * 2 for k in n)
    rows = [
        {"stage": "encode", "files": C, "bytes": sum(n) * d * 4, "note": "latents, float32"},
        {"stage": "invert", "files": C, "bytes": C * K * 5 * d * 4 + sum(n[k] for k in stored) * d * K * 2 + structure,
         "note": f"statistics of {K} timesteps (float32); latents of {len(stored)} classes at every timestep (float16); "
                 + (f"at t = {sel['timestep']} a rank-{rank} covariance factor and {inv['reference_images']} latents"
                    if on else "no covariance factor or reference latents (no job reads them)")},
        {"stage": "fit_gaussian", "files": C, "bytes": C * (K + 1) * 5 * d * 4 + structure,
         "note": "mean, var, normality (float32)" + ("; the covariance factor and reference latents, copied" if on else "")},
        {"stage": "select", "files": C * len(ipcs),
         "bytes": sum(C * (2 * i * d * 4 + min(sel["m"], HEAD) * 4 + math.ceil(sel["m"] / sel["chunk_groups"]) * 4)
                      for i in ipcs), "note": "winner + one random group (float32), scores"},
        {"stage": "images", "files": C * len(ipcs) * len(image_methods),
         "bytes": sum(C * i * px for i in ipcs) * len(image_methods),
         "note": f"{', '.join(image_methods)} at {res_out} px (raw uint8: PNG is at most this)"},
    ]
    if methods:
        rows.append({"stage": "prepare_val", "files": 1, "bytes": n_val * px, "note": "validation split, uint8"})
    abl = fig.get("timestep_ablation", {})
    if fig.get("enabled", True) and abl.get("enabled", True):
        kt = len(abl.get("timesteps") or inv["keep_timesteps"])
        res = ds["resolution"]
        rows.append({"stage": "ablation_timestep", "files": len(stored),
                     "bytes": len(stored) * kt * abl.get("ipc", 10) * res * res * ds.get("channels", 3),
                     "note": f"{kt} timesteps x IPC {abl.get('ipc', 10)} images of {len(stored)} classes (uint8)"})
    variants = (config.get("ablation") or {}).get("variants") or {}
    if (config.get("ablation") or {}).get("enabled", True) and variants:
        i = sum(ablation_ipcs(config))  # per class: the selections and images of every ablation IPC
        per = C * (K * 5 * d * 4 + (K + 1) * 5 * d * 4 + 2 * i * d * 4 + min(sel["m"], HEAD) * 4 * len(ablation_ipcs(config))
                   + i * px)
        rows.append({"stage": "ablation variants", "files": 4 * C * len(variants), "bytes": per * len(variants),
                     "note": f"{len(variants)} variants (at most: each with its own inversion)"})
    total = sum(r["bytes"] for r in rows)
    every = sum(n) * d * K * 4
    meta = {"dataset": name, "classes": C, "train_images": sum(n), "val_images": n_val, "shape_from": source,
            "latent_shape": list(shape), "latent_shape_from": shape_source, "total_bytes": total,
            "every_timestep_float32_bytes": every}
    return rows, meta


def gb(b: float) -> str:
    return f"{b / 1e9:,.2f} GB" if b >= 1e8 else f"{b / 1e6:,.1f} MB"


def main(argv=None):
    import yaml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--imagenet", action="store_true", help="ILSVRC2012's image counts")
    p.add_argument("--classes", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=0)
    p.add_argument("--val-per-class", type=int, default=0)
    p.add_argument("--json", help="also write the rows and totals as JSON")
    a = p.parse_args(argv)
    from d3hr.config import apply_protocol, validate_schema

    config = validate_schema(apply_protocol(yaml.safe_load(Path(a.configfile).read_text())))
    out = {}
    for name, ds in config["datasets"].items():
        rows, meta = rows_for(name, ds, config, a)
        out[name] = {"rows": rows, **meta}
        print(f"**{name}**: {meta['classes']} classes, {meta['train_images']:,} training images ({meta['shape_from']}), "
              f"latents {'x'.join(map(str, meta['latent_shape']))} ({meta['latent_shape_from']})\n")
        print("| stage | files | bytes | what |\n|---|---:|---:|---|")
        for r in rows:
            print(f"| {r['stage']} | {r['files']:,} | {gb(r['bytes'])} | {r['note']} |")
        print(f"| **total** | | **{gb(meta['total_bytes'])}** | upper bound (gzip and PNG compress) |")
        print(f"\nEvery kept timestep of every image in float32, as inverted files held before: "
              f"{gb(meta['every_timestep_float32_bytes'])}.\n")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
