"""Benchmark: what `invert.max_images_per_class` changes, measured on held-out TRAINING images (never on val).

A class's Gaussian (eq. 3.1) fitted from n of its images has an error of about sigma / sqrt(n) in its mean. This bench
takes a finished run of the embedded default (its inverted latents at the selection timestep are stored for every
class), holds out the last `--holdout` images of every class (sorted file names, as bench/student_budget.py), and for
n = 100, 300 and the whole rest ("all") of each class:
1. fits the Gaussian from the seeded subset that `invert.max_images_per_class: n` would feed (`d3hr.data.image_subset`
   over the pool's files) and reports its distance to the fit of the whole pool: the mean over dimensions of
   |mu_n - mu_all| / sigma_all and of |sigma_n / sigma_all - 1|, beside sqrt(2 / pi) sqrt(1/n - 1/N), what the mean's
   error would be for independent draws;
2. selects IPC 10 and 50 latents by group sampling with the config's settings (`d3hr.group_sampling.select_group`,
   the select stage's key) and reports how far they move from the selection of the whole pool;
3. decodes them as the decode stage does (`d3hr.decode.decode_latents`), reports the teacher's top-1 on the images,
   and trains the configured student on them with the teacher's soft labels as `d3hr evaluate` does (its budget,
   rate and schedule from the config), `--seeds` seeds, and reports its top-1 on the held-out images.
The teacher has seen the held-out images in its own training; the students and the Gaussians never do.

    python bench/image_subset.py --out bench/image_subset.jsonl      # about 15 minutes on 2 cores, after `make run`
    python bench/image_subset.py --out bench/image_subset.jsonl --report | tee bench/image_subset.txt

Each finished (n, IPC, seed) appends one JSON line to --out; those already there are skipped (an interrupted run
resumes). The decoded sets are cached under --cache.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def pool_and_held(files: list[str], holdout: int):
    """The sorted file names of a class, split into the pool (fits, selections) and the last `holdout` (students'
    test set)."""
    files = sorted(files)
    return files[:-holdout], files[-holdout:]


def gaussian_distance(mu, var, mu_all, var_all) -> dict:
    """How far a subset's fit is from the pool's: in units of the pool's sigma, averaged over dimensions."""
    s_all = np.sqrt(var_all)
    return {"mu_err": float(np.mean(np.abs(mu - mu_all) / s_all)),
            "sigma_err": float(np.mean(np.abs(np.sqrt(var) / s_all - 1)))}


def mean_error_iid(n: int, N: int) -> float:
    """E|mu_n - mu_N| / sigma for n of N independent draws taken without replacement (normal approximation)."""
    return math.sqrt(2 / math.pi) * math.sqrt(max(0.0, 1 / n - 1 / N))


def load_config(path: Path) -> dict:
    import yaml

    from d3hr.config import apply_protocol, validate_schema

    return validate_schema(apply_protocol(yaml.safe_load(path.read_text())))


def prepare(a, cfg):
    """Per class: pool/held-out split, the Gaussians of each n, their distances, the selections and decoded images
    (cached in --cache), and the held-out images. Returns (rows of the fit and selection, sets, held-out x, y)."""
    import h5py

    from d3hr.data import image_subset, iter_image_batches, list_images
    from d3hr.gaussian import fit
    from d3hr.group_sampling import Weights, select_group
    from d3hr.h5io import read_attrs

    sel_cfg, t = cfg["select"], cfg["select"]["timestep"]
    weights = Weights(**sel_cfg["weights"])
    ds = cfg["datasets"][a.dataset]
    res = REPO / "results" / a.dataset
    classes = sorted(p.stem for p in (res / "inverted").glob("*.h5"))
    a.cache.mkdir(parents=True, exist_ok=True)
    fit_rows, sets, held_x, held_y = [], {}, [], []
    ldm = None
    for cls in classes:
        with h5py.File(res / "inverted" / f"{cls}.h5") as f:
            if f"t{t}" not in f:
                raise SystemExit(f"{res}/inverted/{cls}.h5: no stored inverted latents at t = {t}")
            z = f[f"t{t}"][:].astype(np.float32)
            attrs = read_attrs(f)
            label, shape = int(attrs["label"]), tuple(int(s) for s in attrs["latent_shape"])
        with h5py.File(res / "latents" / f"{cls}.h5") as f:  # the inverted rows are encode's, in its order
            ids = list(f["ids"].asstr()[:])
        if len(ids) != len(z):
            raise SystemExit(f"{res}/inverted/{cls}.h5: {len(z)} rows, its latents file {len(ids)} ids")
        row_of = {Path(i).name: k for k, i in enumerate(ids)}
        files = [Path(p).name for p in list_images(REPO / "data" / a.dataset / "train" / cls)]
        pool, held = pool_and_held(files, a.holdout)
        for _, b in iter_image_batches([REPO / "data" / a.dataset / "train" / cls / h for h in held],
                                       ds["resolution"], ds["channels"], 256):
            held_x.append(b)
            held_y.append(np.full(len(b), label, np.int64))
        x_pool = z[[row_of[p] for p in pool]].reshape(len(pool), -1)
        mu_all, var_all = fit(x_pool)
        for n in a.n:
            chosen = image_subset(pool, n, cfg["seed"], cls) if n else pool
            mu, var = fit(z[[row_of[p] for p in chosen]].reshape(len(chosen), -1))
            row = {"cls": cls, "n": n or "all", "n_images": len(chosen), "N": len(pool),
                   **gaussian_distance(mu, var, mu_all, var_all), "mu_err_iid": mean_error_iid(len(chosen), len(pool))}
            for ipc in a.ipcs:
                key = f"{cls}-n{n or 'all'}-ipc{ipc}"
                cache = a.cache / f"{key}.npz"
                if not cache.exists():
                    t0 = time.time()
                    sel = select_group(mu, var, ipc, sel_cfg["m"], cfg["seed"], key=(cls,), weights=weights,
                                       skew_mode=sel_cfg["skew_mode"], chunk_groups=sel_cfg["chunk_groups"],
                                       threads=a.threads)
                    if ldm is None:
                        from d3hr.models import load_ldm

                        ldm = load_ldm(res / "models" / "pipeline")
                    images = decode(ldm, cfg, sel.latents.reshape(ipc, *shape), t, label)
                    np.savez(cache, latents=sel.latents, images=images, score=sel.score, index=sel.index,
                             chunk=sel.chunk, seconds=time.time() - t0)
                c = np.load(cache)
                sets[n or "all", ipc, cls] = (c["images"], label)
                row[f"ipc{ipc}_score"] = float(c["score"])
                row[f"ipc{ipc}_winner"] = f"{int(c['chunk'])}/{int(c['index'])}"
                row[f"ipc{ipc}_latents"] = c["latents"]
            fit_rows.append(row)
        print(f"[image_subset] {cls}: fits, selections and decoded sets ready", file=sys.stderr, flush=True)
    for row in fit_rows:  # the selections' distance to the whole pool's
        base = next(r for r in fit_rows if r["cls"] == row["cls"] and r["n"] == "all")
        for ipc in a.ipcs:
            lat, lat_all = row[f"ipc{ipc}_latents"], base[f"ipc{ipc}_latents"]
            row[f"ipc{ipc}_moved"] = float(np.linalg.norm(lat - lat_all) / np.linalg.norm(lat_all))
            row[f"ipc{ipc}_same_winner"] = row[f"ipc{ipc}_winner"] == base[f"ipc{ipc}_winner"]
    for row in fit_rows:
        for ipc in a.ipcs:
            del row[f"ipc{ipc}_latents"]
    return fit_rows, sets, np.concatenate(held_x), np.concatenate(held_y)


def decode(ldm, cfg, z, t, label):
    from d3hr.ddim import timestep_grid
    from d3hr.decode import decode_latents, start_timestep

    grid = timestep_grid(ldm.num_train_timesteps, cfg["invert"]["num_inference_steps"])
    t0 = start_timestep(t, grid, cfg["decode"]["start"])
    return decode_latents(ldm, z, t0, label, grid, cfg["decode"]["guidance_scale"], cfg["decode"]["batch_size"])


def train(a, cfg, sets, n, ipc, seed, held, teacher, n_classes):
    """One student on the decoded set of (n, IPC), as `d3hr evaluate` trains it; top-1 on the held-out images."""
    from d3hr.archs import student_lr
    from d3hr.evaluate import authors_batch_size, budget_steps, train_student
    from d3hr.nets import create_classifier

    ev = cfg["evaluate"]
    parts = [sets[n, ipc, c] for (nn, i, c) in sets if nn == n and i == ipc]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([np.full(len(p[0]), p[1], np.int64) for p in parts])
    student = create_classifier(ev["students"][0], num_classes=n_classes, in_chans=x.shape[-1], small_input=True,
                                resolution=x.shape[1], seed=seed, builder=ev["builder"])
    bs = ev["batch_size"] or authors_batch_size(ipc, n_classes, len(x))
    steps = budget_steps(len(x), bs, ev["epochs"])
    t0 = time.time()
    res = train_student(student, teacher, x, y, held, steps=steps, batch_size=bs,
                        lr=student_lr(ev["students"][0], ev["lr"]), weight_decay=ev["weight_decay"], seed=seed,
                        mix=ev["mix"], temperature=ev["temperature"] or None, epochs=ev["epochs"],
                        schedule=ev["schedule"], precision=ev["precision"], compile=cfg["compile"])
    return {"n": n, "ipc": ipc, "seed": seed, "top1": res["top1"], "top1_best_last": res["top1_best_last"],
            "steps": steps, "autocast": res["autocast"], "seconds": time.time() - t0}


def report(path: Path):
    import pandas as pd

    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    fits = pd.DataFrame([r for r in rows if r["kind"] == "fit"])
    st = pd.DataFrame([r for r in rows if r["kind"] == "student"])
    rec = pd.DataFrame([r for r in rows if r["kind"] == "teacher"])
    order = {"100": 0, "300": 1, "all": 2}
    key = lambda s: s.astype(str).map(lambda v: order.get(v, int(v) if v.isdigit() else 9))  # noqa: E731
    print(f"Held-out: {fits['N'].iloc[0] if len(fits) else '?'} pool images per class fit, the rest are the students' "
          f"test set; {fits['cls'].nunique()} classes.\n")
    print("| n | mean's error / sigma (measured) | iid draws would give | sigma's relative error | "
          + " | ".join(f"IPC {i}: selected latents moved | IPC {i}: same winning group" for i in (10, 50)) + " |")
    print("|---|---|---|---|" + "---|---|" * 2)
    ipcs = sorted(int(c[3:-6]) for c in fits.columns if c.startswith("ipc") and c.endswith("_score"))
    for n, g in sorted(fits.groupby(fits["n"].astype(str)), key=lambda kv: order.get(kv[0], 9)):
        cells = []
        for i in ipcs:
            cells += [f"{100 * g[f'ipc{i}_moved'].mean():.0f} %", f"{int(g[f'ipc{i}_same_winner'].sum())} of {len(g)}"]
        print(f"| {n} | {g['mu_err'].mean():.3f} | {g['mu_err_iid'].mean():.3f} | {g['sigma_err'].mean():.3f} | "
              + " | ".join(cells) + " |")
    if len(rec):
        print("\nThe teacher's top-1 on the decoded images (% of each set recognised as its class):\n")
        print("| n | " + " | ".join(f"IPC {i}" for i in ipcs) + " |\n|---|" + "---|" * len(ipcs))
        for n, g in sorted(rec.groupby(rec["n"].astype(str)), key=lambda kv: order.get(kv[0], 9)):
            vals = {int(r["ipc"]): r["teacher_top1"] for _, r in g.iterrows()}
            print(f"| {n} | " + " | ".join(f"{100 * vals[i]:.1f}" for i in ipcs) + " |")
    if len(st):
        st["n"] = st["n"].astype(str)
        g = st.groupby(["n", "ipc"])["top1"].agg(["mean", "std", "count"]).reset_index()
        g = g.sort_values(["ipc", "n"], key=lambda s: key(s) if s.name == "n" else s)
        print("\nStudents' top-1 on the held-out training images (%, mean ± std over seeds):\n")
        print("| IPC | n | top-1 | seeds | against all |\n|---|---|---|---|---|")
        for _, r in g.iterrows():
            base = g[(g["ipc"] == r["ipc"]) & (g["n"] == "all")].iloc[0]
            diff = 100 * (r["mean"] - base["mean"])
            print(f"| {r['ipc']} | {r['n']} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | {int(r['count'])} | "
                  f"{'' if r['n'] == 'all' else f'{diff:+.1f}'} |")
        print("\nVerdict (computed from the rows above): for each n, the largest |difference to all| over the IPCs "
              "against twice the larger seed std of the two rows compared:\n")
        for n in sorted(set(g["n"]) - {"all"}, key=lambda v: order.get(v, 9)):
            worst = []
            for ipc in sorted(set(g["ipc"])):
                r = g[(g["ipc"] == ipc) & (g["n"] == n)].iloc[0]
                base = g[(g["ipc"] == ipc) & (g["n"] == "all")].iloc[0]
                worst.append((abs(r["mean"] - base["mean"]), 2 * max(r["std"], base["std"]), ipc))
            d, spread, ipc = max(worst)
            within = ("within the seeds' spread at every IPC" if all(x <= y for x, y, _ in worst)
                      else "beyond the seeds' spread")
            print(f"- n = {n}: at most {100 * d:.1f} points from all (IPC {ipc}; twice the seed std there: "
                  f"{100 * spread:.1f}): {within}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    p.add_argument("--dataset", default="animal_mnist")
    p.add_argument("--holdout", type=int, default=100, help="held-out training images per class")
    p.add_argument("--n", nargs="+", type=int, default=[100, 300, 0], help="images per class to fit from; 0: all")
    p.add_argument("--ipcs", nargs="+", type=int, default=[10, 50])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=REPO / "bench" / ".image_subset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report", action="store_true")
    a = p.parse_args(argv)
    if a.report:
        return report(a.out)
    import torch

    from d3hr.nets import load_classifier, predict

    torch.set_num_threads(a.threads)
    cfg = load_config(a.configfile)
    done = set()
    if a.out.exists():
        for line in a.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["kind"], str(r.get("n")), r.get("ipc"), r.get("seed"), r.get("cls")))

    def emit(r):
        if (r["kind"], str(r.get("n")), r.get("ipc"), r.get("seed"), r.get("cls")) not in done:
            with open(a.out, "a") as f:
                f.write(json.dumps(r) + "\n")

    fit_rows, sets, xh, yh = prepare(a, cfg)
    for r in fit_rows:
        emit({"kind": "fit", **r})
    teacher, ck = load_classifier(REPO / "results" / a.dataset / "models" / "teacher.pt")
    for n in [n or "all" for n in a.n]:
        for ipc in a.ipcs:
            parts = [(v[0], v[1]) for (nn, i, c), v in sets.items() if nn == n and i == ipc]
            pred = predict(teacher, np.concatenate([x for x, _ in parts]))
            truth = np.concatenate([np.full(len(x), lab) for x, lab in parts])
            emit({"kind": "teacher", "n": n, "ipc": ipc, "teacher_top1": float((pred == truth).mean())})
    for seed in a.seeds:
        for ipc in a.ipcs:
            for n in [n or "all" for n in a.n]:
                if ("student", str(n), ipc, seed, None) in done:
                    continue
                r = {"kind": "student", **train(a, cfg, sets, n, ipc, seed, (xh, yh), teacher, ck["num_classes"])}
                print(json.dumps(r), flush=True)
                emit(r)


if __name__ == "__main__":
    main()
