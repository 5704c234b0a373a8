"""Throughput of the model stages (encode, invert with and without CFG, decode), our code against a straightforward
reference loop like the authors' (fp16 weights, the CFG batch carried doubled through the loop, scheduler values
looked up from numpy arrays in Python at every step), in the same process, on the same random weights and inputs.

    python bench/gpu_stages.py                      # CUDA if present: DiT-XL/2-256 + SD VAE, batch 200, t = 600
    python bench/gpu_stages.py --device cpu         # CPU: a DiT-S/2-sized model + SD VAE, small batch, t = 200

Reports images/s for each stage and implementation, the speed-up, the max abs difference between the two outputs,
and the DiT forward's model FLOP utilisation (FLOPs counted by torch's FlopCounterMode; the peak is the device's
dense bf16 peak from the table below, so MFU is reported on GPUs only).

Then our stages eager against the DiT under `torch.compile` (the config's `compile`; `--compile` lists the modes, by
default `default` and `reduce-overhead` on CUDA, none on the CPU): the DiT forward at the CFG batch, inversion and
decoding, each in img/s with the ratio to eager, the model FLOP/s, the share of the bf16 peak, the relative
difference to eager's output, and the compilation time of each mode (paid once a job and shape; the break-even is
the compile time over the time it saves per image).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from d3hr.ddim import invert, sample, timestep_grid  # noqa: E402
from d3hr.device import model_dtype  # noqa: E402
from d3hr.models import build_scheduler  # noqa: E402
from d3hr.compiling import AUTO_MIN_WORK  # noqa: E402

# dense bf16 tensor-core peaks (TFLOP/s), vendor data sheets
PEAK_BF16 = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
             "A6000": 154.8, "RTX 6000 Ada": 364.0, "4090": 165.2, "A10": 125.0, "L4": 121.0}
XL = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28)  # DiT-XL/2
SMALL = dict(num_attention_heads=6, attention_head_dim=64, num_layers=12)  # DiT-S/2
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              norm_num_groups=32, sample_size=256, scaling_factor=0.18215)


def build(size, device):
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(in_channels=4, out_channels=8, sample_size=32, patch_size=2, num_embeds_ada_norm=1000,
                                norm_type="ada_norm_zero", activation_fn="gelu-approximate", attention_bias=True,
                                norm_elementwise_affine=False, **(XL if size == "xl" else SMALL))
    # random adaLN-Zero weights are zero at init: perturb them so that every block does real work
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    vae = AutoencoderKL(**SD_VAE)
    return dit.eval().to(device), vae.eval().to(device)


def timed(fn, device, repeats=1):
    fn()  # warm-up (kernels, allocator)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ------------------------------------------------------------------ the reference loop (the authors' style)


@torch.no_grad()
def reference_invert(dit16, z0, labels, guidance, acp: np.ndarray, grid, t_end, null_label=1000):
    """DDIM inversion as the authors' code does it: a doubled batch [z, z] carried through the loop when CFG is on,
    guidance mixed and duplicated back at every step, per-step scheduler values taken from numpy arrays."""
    cfg = guidance != 1.0
    x = torch.cat([z0, z0]) if cfg else z0.clone()
    y = torch.cat([labels, torch.full_like(labels, null_label)]) if cfg else labels
    prev = -1
    for t in grid[grid <= t_end]:
        tt = torch.tensor([int(t)] * x.shape[0], device=x.device)
        out = dit16(x.to(dit16.dtype), timestep=tt, class_labels=y).sample.float()
        eps = out[:, :4]
        if cfg:
            cond, uncond = torch.split(eps, len(eps) // 2)
            half = uncond + guidance * (cond - uncond)
            eps = torch.cat([half, half])
        a_prev = torch.from_numpy(np.array([1.0 if prev < 0 else acp[prev]])).to(x.device).float()[0]
        a_next = torch.from_numpy(np.array([acp[int(t)]])).to(x.device).float()[0]
        x0 = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        prev = int(t)
    return x[: len(z0)]


@torch.no_grad()
def reference_sample(dit16, zt, labels, guidance, acp, grid, t_start, null_label=1000):
    x = torch.cat([zt, zt])
    y = torch.cat([labels, torch.full_like(labels, null_label)])
    steps = grid[grid <= t_start][::-1]
    for i, t in enumerate(steps):
        tt = torch.tensor([int(t)] * x.shape[0], device=x.device)
        cond, uncond = torch.split(dit16(x.to(dit16.dtype), timestep=tt, class_labels=y).sample.float()[:, :4], len(zt))
        half = uncond + guidance * (cond - uncond)
        eps = torch.cat([half, half])
        a_t = torch.from_numpy(np.array([acp[int(t)]])).to(x.device).float()[0]
        t_prev = int(steps[i + 1]) if i + 1 < len(steps) else -1
        a_prev = torch.from_numpy(np.array([1.0 if t_prev < 0 else acp[t_prev]])).to(x.device).float()[0]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x[: len(zt)]


def dit_flops(dit, batch, device):
    from torch.utils.flop_counter import FlopCounterMode

    z = torch.randn(batch, 4, 32, 32, device=device, dtype=next(dit.parameters()).dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        dit(z, timestep=torch.full((batch,), 500, device=device), class_labels=torch.zeros(batch, dtype=torch.long,
                                                                                          device=device))
    return fc.get_total_flops()


def peak_tflops(device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, v in PEAK_BF16.items():
        if key in name:
            return v
    return None


def compiled_rows(modes, dit, vae, z0, labels, acp_t, grid, t_end, dtype, device, repeats, eager_rows, peak):
    """Eager against compiled DiT, per mode: forward, invert (CFG) and decode (CFG + eager VAE). Prints a table and
    returns {(stage, mode): img/s} where a mode beats eager, and {("compile_dit", mode): compilation s and break-even}
    for every mode (for the cost model)."""
    batch = len(z0)
    n_steps = int((grid <= t_end).sum())
    zz = torch.randn((2 * batch, 4, 32, 32), device=device).to(dtype)
    yy = torch.cat([labels, torch.full_like(labels, 1000)])
    tt = torch.full((2 * batch,), 500, device=device)
    f_fwd = dit_flops(dit, 2 * batch, device)
    f_vae = vae_decode_flops(vae, batch, device, dtype)

    def stages(model):
        def fwd():
            return model(zz, timestep=tt, class_labels=yy).sample.clone()

        def inv():
            return invert(model, z0, labels, acp_t, grid, [t_end], 1000, 4.0)[t_end]

        def dec():
            z = sample(model, z0, t_end, labels, acp_t, grid, 1000, 4.0)
            return vae.decode((z / 0.18215).to(dtype)).sample

        return {"DiT forward (CFG batch)": (fwd, f_fwd, 2 * batch), f"invert to t={t_end}, CFG": (inv, n_steps * f_fwd, batch),
                f"decode from t={t_end}, CFG + VAE": (dec, n_steps * f_fwd + f_vae, batch)}

    results, out = {}, {}
    with torch.no_grad():
        for name, (fn, flops, n) in stages(dit).items():
            t, o = timed(fn, device, repeats)
            results[name, "eager"] = (t, flops, n, o, 0.0)
        for mode in modes:
            torch._dynamo.reset()
            fast = torch.compile(dit, mode=mode, dynamic=False)
            try:
                t0 = time.perf_counter()
                fast(zz, timestep=tt, class_labels=yy)  # compiles the CFG batch's graph
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t_compile = time.perf_counter() - t0
                for name, (fn, flops, n) in stages(fast).items():
                    t, o = timed(fn, device, repeats)
                    results[name, mode] = (t, flops, n, o, t_compile)
            except Exception as e:  # a mode that fails on this device/torch is reported, not fatal
                print(f"torch.compile mode {mode!r} failed: {type(e).__name__}: {str(e)[:300]}")
    print(f"| stage | mode | img/s | ratio to eager | model TFLOP/s | share of bf16 peak | rel. diff to eager | "
          f"compile s |\n|---|---|---|---|---|---|---|---|")
    for (name, mode), (t, flops, n, o, t_compile) in results.items():
        t_e, _, _, o_e, _ = results[name, "eager"]
        achieved = flops / t / 1e12
        share = f"{100 * achieved / peak:.1f} %" if peak else "-"
        d = float((o.float() - o_e.float()).norm() / o_e.float().norm())
        print(f"| {name} | {mode} | {n / t:,.1f} | {t_e / t:.2f} | {achieved:.3g} | {share} | {d:.2g} | "
              f"{t_compile:.1f} |")
        if mode != "eager" and t < t_e and not name.startswith("DiT"):
            out["invert" if name.startswith("invert") else "decode", mode] = batch / t
            per_img = t_e / n - t / n
            print(f"|   break-even of {mode}: {t_compile / per_img:,.0f} images ({t_compile:.0f} s compile / "
                  f"{per_img * 1e3:.2f} ms saved per image) | | | | | | | |")
        if mode != "eager" and name.startswith("DiT"):  # in `compile: auto`'s unit: images through the DiT
            saved = (t_e - t) / n
            even = t_compile / saved if saved > 0 else float("inf")
            out["compile_dit", mode] = {"compile_s": t_compile, "break_even": even}
            print(f"|   break-even of {mode} in images through the DiT: {even:,.0f} (`compile: auto` assumes "
                  f"{AUTO_MIN_WORK['dit']:,}) | | | | | | | |")
    return out


def vae_decode_flops(vae, batch, device, dtype):
    from torch.utils.flop_counter import FlopCounterMode

    z = torch.randn(batch, 4, 32, 32, device=device, dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        vae.decode(z)
    return fc.get_total_flops()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", choices=["xl", "small"], default=None, help="default: xl on CUDA, small on the CPU")
    ap.add_argument("--batch", type=int, default=None, help="images per batch (default: 200 on CUDA, 4 on the CPU)")
    ap.add_argument("--t", type=int, default=None, help="invert to / decode from t (default: 600 on CUDA, 200 on the CPU)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--rates-out", help="append the measured img/s to this file (bench/rates.jsonl: the cost model)")
    ap.add_argument("--compile", nargs="*", default=None,
                    help="torch.compile modes to time against eager (default: default reduce-overhead on CUDA, none on "
                         "the CPU)")
    a = ap.parse_args()
    device = torch.device(a.device)
    gpu = device.type == "cuda"
    size = a.model or ("xl" if gpu else "small")
    batch = a.batch or (200 if gpu else 4)
    t_end = a.t if a.t is not None else (600 if gpu else 200)
    repeats = a.repeats or (3 if gpu else 1)
    torch.set_num_threads(torch.get_num_threads())
    dit, vae = build(size, device)
    ours_dtype = model_dtype(device, "auto")  # as the workflow loads weights (model_precision auto)
    ref_dtype = torch.float16 if gpu else torch.float32  # fp16 CPU kernels would make the reference a straw man
    dit_ours = dit.to(ours_dtype)
    import copy

    dit_ref = copy.deepcopy(dit).to(ref_dtype)
    vae_ours = vae.to(ours_dtype)
    vae_ref = copy.deepcopy(vae).to(ref_dtype)
    sched = build_scheduler()
    acp_t = sched.alphas_cumprod.to(torch.float64)
    acp_np = acp_t.numpy()
    grid = timestep_grid(1000, 50)
    n_steps = int((grid <= t_end).sum())
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand((batch, 3, 256, 256), generator=gen) * 2 - 1).to(device)
    z0 = torch.randn((batch, 4, 32, 32), generator=gen).to(device) * 0.8
    labels = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    rows = []

    def add(stage, t_ours, t_ref, out_ours, out_ref):
        diff = float((out_ours.float() - out_ref.float()).abs().max())
        rows.append((stage, batch / t_ours, batch / t_ref, t_ref / t_ours, diff))

    with torch.no_grad():
        t1, e1 = timed(lambda: vae_ours.encode(x.to(ours_dtype)).latent_dist.mean * 0.18215, device, repeats)
        t2, e2 = timed(lambda: vae_ref.encode(x.to(ref_dtype)).latent_dist.mean * 0.18215, device, repeats)
        add("encode (VAE, 256 px)", t1, t2, e1, e2)
        for w in (4.0, 1.0):
            t1, o1 = timed(lambda: invert(dit_ours, z0, labels, acp_t, grid, [t_end], 1000, w)[t_end], device, repeats)
            t2, o2 = timed(lambda: reference_invert(dit_ref, z0, labels, w, acp_np, grid, t_end), device, repeats)
            add(f"invert to t={t_end} ({n_steps} steps), CFG {'on, w=4' if w != 1 else 'off'}", t1, t2, o1, o2)

        def ours_decode():
            z = sample(dit_ours, z0, t_end, labels, acp_t, grid, 1000, 4.0)
            return vae_ours.decode((z / 0.18215).to(ours_dtype)).sample

        def ref_decode():
            z = reference_sample(dit_ref, z0, labels, 4.0, acp_np, grid, t_end)
            return vae_ref.decode((z / 0.18215).to(ref_dtype)).sample

        t1, d1 = timed(ours_decode, device, repeats)
        t2, d2 = timed(ref_decode, device, repeats)
        add(f"decode from t={t_end} ({n_steps} steps, CFG) + VAE", t1, t2, d1, d2)
        # DiT forward alone, for the model FLOP utilisation (CFG batch: 2 x batch)
        zz = torch.randn((2 * batch, 4, 32, 32), device=device).to(ours_dtype)
        yy = torch.cat([labels, torch.full_like(labels, 1000)])
        tt = torch.full((2 * batch,), 500, device=device)
        t_fwd, _ = timed(lambda: dit_ours(zz, timestep=tt, class_labels=yy).sample, device, repeats)
        flops = dit_flops(dit_ours, 2 * batch, device)
    dev_name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    n_params = sum(p.numel() for p in dit.parameters()) / 1e6
    print(f"device: {dev_name}; DiT {size} ({n_params:.0f}M parameters) + SD VAE at 256x256; batch {batch}; "
          f"ours {str(ours_dtype).replace('torch.', '')}, reference {str(ref_dtype).replace('torch.', '')}")
    print("| stage | ours img/s | reference img/s | speed-up | max abs diff |")
    print("|---|---|---|---|---|")
    for stage, a_, b_, r, dmax in rows:
        print(f"| {stage} | {a_:.3g} | {b_:.3g} | {r:.2f}x | {dmax:.3g} |")
    achieved = flops / t_fwd / 1e12
    peak = peak_tflops(device)
    mfu = f"MFU {100 * achieved / peak:.1f}% of {peak:.0f} TFLOP/s bf16 peak" if peak else "no bf16 peak known: MFU not reported"
    print(f"DiT forward, batch {2 * batch}: {flops / 2 / batch / 1e9:.1f} GFLOP per image, {t_fwd * 1e3:.1f} ms, "
          f"{achieved:.3g} TFLOP/s achieved; {mfu}")
    modes = a.compile if a.compile is not None else (["default", "reduce-overhead"] if gpu else [])
    comp = compiled_rows(modes, dit_ours, vae_ours, z0, labels, acp_t, grid, t_end, ours_dtype, device, repeats, rows,
                         peak) if modes else {}
    if a.rates_out:
        from rates import append_rate

        for stage, a_, *_ in rows:
            key = "encode" if stage.startswith("encode") else "invert" if stage.startswith("invert") else "decode"
            if "CFG off" in stage:
                continue
            append_rate(a.rates_out, key, a_, "img/s", dev_name, "python bench/gpu_stages.py " + " ".join(sys.argv[1:]),
                        batch=batch, steps=None if key == "encode" else n_steps, model=f"DiT {size} + SD VAE, 256 px",
                        dtype=str(ours_dtype).replace("torch.", ""))
        for (key, mode), r in comp.items():  # the compiled stages, when faster than eager
            if key == "compile_dit":  # a job's compilation (one batch shape), and where it pays
                append_rate(a.rates_out, key, r["compile_s"], "s/shape", dev_name,
                            "python bench/gpu_stages.py " + " ".join(sys.argv[1:]), batch=2 * batch, compile=mode,
                            break_even=round(r["break_even"]) if r["break_even"] != float("inf") else None,
                            model=f"DiT {size}")
                continue
            append_rate(a.rates_out, key, r, "img/s", dev_name, "python bench/gpu_stages.py " + " ".join(sys.argv[1:]),
                        batch=batch, steps=n_steps, model=f"DiT {size} + SD VAE, 256 px",
                        dtype=str(ours_dtype).replace("torch.", ""), compile=mode)


if __name__ == "__main__":
    main()
