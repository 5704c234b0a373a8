"""The cost of a config's run from measured rates: GPU-hours, CPU-hours, wall time and disk, per stage.

Reads the rates the benchmarks append to bench/rates.jsonl (`--rates-out` of bench/gpu_stages.py,
bench/eval_throughput.py, bench/group_sampling_device.py, bench/encode_decode.py; the newest line of each kind wins),
the config, and the dataset's counts (`--imagenet`: ILSVRC2012's). Each row says how its figure was obtained:
measured (the rate of this very work), scaled (a measured rate scaled by the DDIM steps: cost is linear in them),
estimated (no measurement of this kind: the rule is given), or not measured (left out of the totals). Wall times
assume the jobs pack perfectly onto the GPUs (no queueing, no failures); disk comes from bench/stage_bytes.py.

    python bench/cost_model.py --configfile config/imagenet.yaml --imagenet
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from rates import RATES, load_rates  # noqa: E402
from stage_bytes import IMAGENET, gb, rows_for  # noqa: E402

from d3hr.compiling import compile_mode, dit_work  # noqa: E402


def torch_device(kind: str):
    """A stand-in for torch.device (the cost model imports no torch): compile_mode reads only `.type`."""
    return type("Device", (), {"type": kind})()

R101_OVER_R50 = 1.9  # ResNet-101 / ResNet-50 FLOP per image: the estimate for an unmeasured ResNet-101
# A compiled DiT job's compilation (Dynamo's tracing and a warm inductor cache, one batch shape), ESTIMATED until
# bench/gpu_stages.py --rates-out measures it on a GPU (a `compile_dit` row); on the CPU here a DiT-S/2 took 21 s
COMPILE_DIT_S = 10.0


def newest(rates, **match):
    rows = [r for r in rates if all(r.get(k) == v for k, v in match.items())]
    return max(rows, key=lambda r: r["date"]) if rows else None


def n_steps(num_inference_steps: int, t: int, train_steps: int = 1000) -> int:
    """DDIM grid steps between 0 and t (the 50-step grid: 31 to t = 600, 39 to t = 760)."""
    return sum(1 for g in range(0, train_steps, train_steps // num_inference_steps) if g <= t)


def dit_stage(rates, gpu, config, stage: str, work: float, jobs: int) -> tuple[dict, float, str]:
    """A DiT stage's rate under the config's `compile` for a job of `work` images through the DiT (d3hr.compiling: at
    ImageNet scale `auto` compiles an invert job, not a decode job): (its rate row, the seconds of compilation of its
    `jobs`, how). A compiled job pays its compilation (measured by bench/gpu_stages.py, else COMPILE_DIT_S) at the
    compiled rate where one is measured, else at the eager rate."""
    setting = config.get("compile", "auto")
    mode = compile_mode(torch_device("cuda"), setting, work)
    eager = newest(rates, stage=stage, device=gpu, compile=None)
    if not mode:
        return eager, 0.0, "eager (" + ("below `compile: auto`'s break-even" if setting == "auto" else
                                        f"`compile: {setting}`") + ")"
    fast = newest(rates, stage=stage, device=gpu, compile=mode)
    comp = newest(rates, stage="compile_dit", device=gpu, compile=mode, model="DiT xl")
    c_s = comp["rate"] if comp else COMPILE_DIT_S
    rate = "" if fast else ": at the eager rate, the compiled one not measured"
    how = f"compiled ({mode}){rate}, {c_s:.0f} s of compilation a job ({'measured' if comp else 'estimated'})"
    return fast or eager, jobs * c_s, how


# the rule of each GPU row, by the row's first word
RULE_OF = {"encode": "encode", "invert": "invert", "select": "select", "decode": "decode",
           "timestep": "ablation_timestep", "evaluate": "evaluate"}


def slurm_jobs(rows: list[dict], profile: dict) -> tuple[int, int]:
    """(cluster jobs, grouped members) of the GPU rows under a SLURM profile's `groups` and `group-components`: a
    group's components are its rules' largest job count (a class's encode with its invert; a selection with its
    decode), `k` of them per cluster job. Every cluster job pays a process's start, imports and model load (its job
    server's); each member of a group job is served (rules/common.smk)."""
    groups = dict(g.split("=") for g in profile.get("groups", []))
    per_job = {g: int(k) for g, k in (x.split("=") for x in profile.get("group-components", []))}
    components, alone, members = {}, 0, 0
    for r in rows:
        g = groups.get(RULE_OF[r["stage"].split()[0].rstrip(":")])
        if g is None:
            alone += r["jobs"]
        else:
            components[g] = max(components.get(g, 0), r["jobs"])
            members += r["jobs"]
    return alone + sum(math.ceil(c / per_job.get(g, 1)) for g, c in components.items()), members


def model(config: dict, counts: dict, rates: list[dict], gpu: str, profile: dict | None = None) -> tuple[list[dict], dict]:
    inv, sel, dec, ev, fig = (config[k] for k in ("invert", "select", "decode", "evaluate", "figures"))
    n, C, n_val = counts["train"], counts["classes"], counts["val"]
    stored = C if inv.get("store_classes") is None else min(C, inv["store_classes"])
    sub = inv.get("max_images_per_class", 0)
    if sub:  # a seeded subset of each class feeds encode, inversion and the fit (every ImageNet class has >= 732)
        n = min(n, C * sub)
    rows = []

    def gpu_row(stage, work, seconds, rate, basis, jobs):
        rows.append({"stage": stage, "work": work, "rate": rate, "gpu_h": seconds / 3600 if seconds is not None else None,
                     "cpu_h": 0.0, "basis": basis, "jobs": jobs})

    enc = newest(rates, stage="encode", device=gpu)
    gpu_row("encode", f"{n:,} images", n / enc["rate"], f"{enc['rate']:,.0f} img/s", "measured", C)
    s_inv = n_steps(inv["num_inference_steps"], max(inv["keep_timesteps"]))
    inv_r, inv_compile, note = dit_stage(rates, gpu, config, "invert", dit_work(n / C, s_inv, inv["guidance_scale"]), C)
    r = inv_r["rate"] * inv_r["steps"] / s_inv
    basis = "measured" if s_inv == inv_r["steps"] else f"scaled from {inv_r['rate']} img/s at {inv_r['steps']} steps"
    gpu_row(f"invert to t = {max(inv['keep_timesteps'])} ({s_inv} steps, CFG)", f"{n:,} images", n / r + inv_compile,
            f"{r:,.1f} img/s", f"{basis}; {note}", C)
    sel_gpu = [newest(rates, stage="select", ipc=i, d=4096, device=gpu) for i in sel["ipc"]]
    if all(s and s["device"] == gpu for s in sel_gpu):
        secs = sum(C * sel["m"] / s["rate"] for s in sel_gpu)
        gpu_row("select", f"{C:,} classes x IPC {sel['ipc']}, m = {sel['m']:,}", secs,
                ", ".join(f"{s['rate']:,.0f} groups/s" for s in sel_gpu), "measured", C * len(sel["ipc"]))
    else:
        cpu = [newest(rates, stage="select_cpu", ipc=i, d=4096) for i in sel["ipc"]]
        cpu_h = sum(C * c["rate"] * sel["m"] / c["m"] for c in cpu) / 3600 if all(cpu) else None
        rows.append({"stage": "select", "work": f"{C:,} classes x IPC {sel['ipc']}, m = {sel['m']:,}",
                     "rate": "not measured on a GPU", "gpu_h": None, "cpu_h": 0.0, "jobs": C * len(sel["ipc"]),
                     "basis": "not measured (on a GPU since session 15; the numpy path on 2 CPU cores: "
                              + (f"{cpu_h:,.0f} CPU-h)" if cpu_h else "no rate)")})
    s_dec = n_steps(inv["num_inference_steps"], sel["timestep"])
    dec_r, dec_compile, note = dit_stage(rates, gpu, config, "decode",
                                         dit_work(min(sel["ipc"]), s_dec, dec["guidance_scale"]), C * len(sel["ipc"]))
    r = dec_r["rate"] * dec_r["steps"] / s_dec
    imgs = C * sum(sel["ipc"])
    gpu_row(f"decode from t = {sel['timestep']} ({s_dec} steps, CFG) + VAE", f"{imgs:,} images",
            imgs / r + dec_compile, f"{r:,.1f} img/s",
            f"{'measured' if s_dec == dec_r['steps'] else 'scaled'}; {note}", C * len(sel["ipc"]))
    abl = fig.get("timestep_ablation", {})
    if fig.get("enabled", True) and abl.get("enabled", True):
        ts = abl.get("timesteps") or inv["keep_timesteps"]
        secs = sum(stored * abl["ipc"] / (dec_r["rate"] * dec_r["steps"] / n_steps(inv["num_inference_steps"], t))
                   for t in ts)
        gpu_row("timestep ablation (decode part)", f"{stored} classes x {len(ts)} timesteps x IPC {abl['ipc']}", secs,
                "decode's rate", "scaled (its group sampling: as select)", stored)
    # students: each sees epochs x IPC x C images; validation after each of the last 9 epochs
    methods = [m for m in ev["methods"] if m != "full"]
    train_s, val_s, longest, basis = 0.0, 0.0, 0.0, "measured"
    for arch in ev["students"]:
        tr = newest(rates, stage="evaluate_train", device=gpu, arch=arch)
        va = newest(rates, stage="evaluate_val", device=gpu, arch=arch)
        if tr is None and arch == "resnet101":
            tr = dict(newest(rates, stage="evaluate_train", device=gpu, arch="resnet50"))
            tr["rate"] /= R101_OVER_R50
            va = dict(newest(rates, stage="evaluate_val", device=gpu, arch="resnet50"))
            va["rate"] /= R101_OVER_R50
            basis = f"measured; ResNet-101 estimated (ResNet-50's rates / {R101_OVER_R50}, their FLOP ratio)"
        if tr is not None and va is None:  # validation scaled from a measured architecture's, by the training rates
            ref = next(x for x in ("resnet18", "resnet50") if newest(rates, stage="evaluate_val", device=gpu, arch=x))
            va = dict(newest(rates, stage="evaluate_val", device=gpu, arch=ref))
            va["rate"] *= tr["rate"] / newest(rates, stage="evaluate_train", device=gpu, arch=ref)["rate"]
            basis = f"measured; {arch}'s validation estimated ({ref}'s scaled by their training rates)"
        if tr is None or va is None:
            raise SystemExit(f"no rate for student {arch} on {gpu} in {RATES}")
        for ipc in sel["ipc"]:
            job = ev["epochs"] * ipc * C / tr["rate"] + min(9, ev["epochs"]) * n_val / va["rate"]
            longest = max(longest, job)
            k = len(methods) * len(ev["seeds"])
            train_s += k * ev["epochs"] * ipc * C / tr["rate"]
            val_s += k * min(9, ev["epochs"]) * n_val / va["rate"]
    n_eval = len(methods) * len(ev["seeds"]) * len(ev["students"]) * len(sel["ipc"])
    gpu_row(f"evaluate: {n_eval} students, {ev['epochs']} epochs", f"{', '.join(ev['students'])}; 9 validations each",
            train_s + val_s, "see docs/benchmarks.md", basis, n_eval)
    known = [r for r in rows if r["gpu_h"] is not None]
    distill = sum(r["gpu_h"] for r in known if not r["stage"].startswith("evaluate"))
    evaluate = sum(r["gpu_h"] for r in known if r["stage"].startswith("evaluate"))
    jobs = sum(r["jobs"] for r in rows)
    fixed = {m: newest(rates, stage="job_fixed", mode=m) for m in ("served", "own process")}
    sbatch, members = slurm_jobs(rows, profile or {})
    fixed_h = {m: jobs * f["rate"] / 3600 for m, f in fixed.items() if f}
    if all(fixed.values()):
        fixed_h["SLURM"] = (sbatch * fixed["own process"]["rate"] + members * fixed["served"]["rate"]) / 3600
    summary = {"distill_gpu_h": distill, "evaluate_gpu_h": evaluate, "gpu_h": distill + evaluate,
               "longest_job_h": longest / 3600, "jobs": jobs, "sbatch": sbatch, "members": members,
               "fixed_h": fixed_h,
               "missing": [r["stage"] for r in rows if r["gpu_h"] is None]}
    return rows, summary


def main(argv=None):
    import yaml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default=str(REPO / "config" / "imagenet.yaml"))
    p.add_argument("--imagenet", action="store_true")
    p.add_argument("--rates", default=str(RATES))
    p.add_argument("--gpu", default="NVIDIA H200", help="the device whose rates to use")
    p.add_argument("--gpus", type=int, default=4, help="the box's GPUs for the wall time")
    p.add_argument("--profile", default=str(REPO / "profiles" / "slurm" / "config.yaml"),
                   help="the SLURM profile whose groups set the cluster jobs")
    a = p.parse_args(argv)
    from d3hr.config import apply_protocol, validate_schema

    config = validate_schema(apply_protocol(yaml.safe_load(Path(a.configfile).read_text())))
    if not a.imagenet:
        raise SystemExit("only --imagenet counts are built in")
    counts = IMAGENET
    rates = load_rates(a.rates)
    rows, s = model(config, counts, rates, a.gpu, yaml.safe_load(Path(a.profile).read_text()))
    print(f"`{Path(a.configfile).name}`, ILSVRC2012 ({counts['train']:,} training images, {counts['classes']:,} "
          f"classes), rates of one {a.gpu} from `{Path(a.rates).name}`:\n")
    print("| stage | work | rate | GPU-h | how |\n|---|---|---|---:|---|")
    for r in rows:
        gh = f"{r['gpu_h']:.2f}" if r["gpu_h"] is not None else "?"
        print(f"| {r['stage']} | {r['work']} | {r['rate']} | {gh} | {r['basis']} |")
    print(f"| **total** | | | **{s['gpu_h']:.1f}** | without: {', '.join(s['missing']) or 'nothing'} |\n")
    partial = " without " + ", ".join(s["missing"]) if s["missing"] else ""
    dist_goal = ("missed" if s["distill_gpu_h"] > 10 else "met" if not partial else "not judged") + partial
    wall_1 = s["gpu_h"] + s["fixed_h"].get("served", 0)
    wall_n = (s["distill_gpu_h"] + s["fixed_h"].get("served", 0)) / a.gpus + max(s["evaluate_gpu_h"] / a.gpus,
                                                                                   s["longest_job_h"])
    print(f"- Distillation (encode to decode, with the timestep ablation): **{s['distill_gpu_h']:.1f} GPU-h** "
          f"(goal <= 10: {dist_goal}), evaluation {s['evaluate_gpu_h']:.1f} GPU-h.")
    fx = s["fixed_h"]
    print(f"- Fixed cost of the {s['jobs']:,} GPU jobs (imports, CUDA start, model load; rates of a served and of a "
          f"lone VAE job): local run, served by the job server, **{fx.get('served', 0):.2f} GPU-h**; SLURM with "
          f"`profiles/slurm`, {s['sbatch']:,} cluster jobs at the own-process rate (a group job's is its job "
          f"server's start) and {s['members']:,} grouped members served, **{fx.get('SLURM', 0):.2f} GPU-h** (every job in a process of its own: "
          f"{fx.get('own process', 0):.2f} GPU-h). Extrapolated: the served rate is a VAE job's, and a DiT job's "
          f"held model (bench/model_cache.py) is assumed to cost as little on a GPU as on the CPU.")
    served = newest(rates, stage="job_fixed", mode="served")
    if served:
        shares = [f"{r['stage'].split()[0].rstrip(':')} {100 * r['jobs'] * served['rate'] / (r['gpu_h'] * 3600):.0f} %"
                  for r in rows if r["gpu_h"]]
        print(f"- Served fixed cost per job against the stage's GPU time (goal <= 10 %): {', '.join(shares)}.")
    print(f"- Wall time, jobs packed perfectly: one GPU **{wall_1:.0f} h**; {a.gpus} GPUs **{wall_n:.1f} h** "
          f"(goal <= 24 h: {'missed' if wall_n > 24 else 'not judged' if partial else 'met'}{partial}; the "
          f"longest job, one student, "
          f"{s['longest_job_h']:.1f} h).")
    disk = {}
    for name, ds in config["datasets"].items():
        args = argparse.Namespace(imagenet=True, classes=0, train_per_class=0, val_per_class=0)
        disk[name] = rows_for(name, ds, config, args)[1]["total_bytes"]
    print(f"- Disk of the results (bench/stage_bytes.py, an upper bound): {', '.join(gb(b) for b in disk.values())}.")
    feeds = [r for r in rows if r["stage"].split()[0] in ("encode", "invert")]
    if not config["invert"].get("max_images_per_class"):
        saved = []
        for k in (300, 100):
            sub = dict(config, invert=dict(config["invert"], max_images_per_class=k))
            sub_rows, _ = model(sub, counts, rates, a.gpu, yaml.safe_load(Path(a.profile).read_text()))
            h = sum(r["gpu_h"] for r in sub_rows if r["stage"].split()[0] in ("encode", "invert"))
            saved.append(f"{k}: {h:.1f} GPU-h")
        print(f"- Encode and invert take {sum(r['gpu_h'] for r in feeds):.1f} GPU-h of all {counts['train']:,} images; "
              f"with `invert.max_images_per_class` {', '.join(saved)} (what a subset changes: docs/results.md, "
              f"\"Fewer images to invert\").")
    if s["missing"]:
        print(f"- Not in the totals, for want of a measurement: {', '.join(s['missing'])}.")


if __name__ == "__main__":
    main()
