"""Throughput of one student training step of the evaluation (d3hr/evaluate.py, docs/method.md §6): student forward
and backward plus the teacher's forward on the same augmented batch, our step against a plain fp32 reference of the
same step, in the same process, on the same random weights and images.

    python bench/eval_throughput.py                  # CUDA if present: ResNet-18 student and teacher, 224 px, batch 100
    python bench/eval_throughput.py --device cpu     # the CPU: same step, smaller (64 px, batch 32, few steps)
    python bench/eval_throughput.py --device cpu --arch convnet_tiny --teacher-arch resnet_tiny --classes 10 \
        --resolution 32 --batch 100 --steps 30 --repeats 3     # the embedded default's student step, one thread

Ours: the distilled set held as uint8 on the device, converted and augmented there per batch (RandomResizedCrop +
flip as one grid_sample, CutMix), student and teacher with channels_last, in bf16 autocast where the hardware computes
bf16 natively (`--precision auto`, as `d3hr evaluate`: GPUs, CPUs with AVX512-BF16 or AMX), fused AdamW on a GPU, the
CPU teacher frozen by TorchScript (`d3hr.evaluate.student_step`), in three versions side by side:
- "host draws": the batch indices, crops and permutations drawn by a CPU generator and copied to the device at every
  step (the code until session 17: three synchronous copies per step);
- "device draws": drawn by a generator on the device, CutMix's box by a CPU one (`d3hr.evaluate.train_student` now);
- the same with student and teacher under `torch.compile` (`--compile MODE`, default `default`; on a GPU only unless
  `--compile-cpu`), with its compilation time.
Reference: the same augmentation and loss on a float32 NCHW set on the device, fp32 eager student and teacher
(torch's default TF32 convolutions), AdamW's default implementation. Prints images/s of each, the ratios, the model
FLOP/s (student forward + backward + teacher forward, counted by torch's FlopCounterMode) and its share of the
device's dense bf16 peak; then the validation pass (`d3hr.evaluate.topk_accuracy`) read from a uint8 HDF5 file one
batch at a time against held on the device (`val_on_device`); and the GPU-hours of an ImageNet IPC-10 evaluation
(1,000 classes x 10 images x 300 epochs) at our rate.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from d3hr.device import PRECISIONS  # noqa: E402
from d3hr.evaluate import (  # noqa: E402
    MEMORY_FORMAT, _Batches, autocast_dtype, kd_loss, optimizer, student_step, topk_accuracy, val_on_device)
from d3hr.augment import cutmix, random_resized_crop_flip  # noqa: E402
from d3hr.nets import create_classifier, frozen_for_inference  # noqa: E402


def rate(step, n_steps, batch, device):
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        loss = step()
    float(loss)  # wait for the last step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_steps * batch / (time.perf_counter() - t0)


def step_flops(student, teacher, x, dtype, device):
    """FLOPs of one training step on the batch `x`: the student's forward and backward, the teacher's forward."""
    from torch.utils.flop_counter import FlopCounterMode

    student = getattr(student, "_orig_mod", student)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with FlopCounterMode(display=False) as fc:
        with ctx:
            out = student(x).float()
        out.sum().backward()
        with torch.no_grad(), ctx:
            teacher(x)
    student.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def peak_tflops(device):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_stages import peak_tflops as peak

    return peak(device)


def validation(model, a, res, device, dtype):
    """The validation pass of one evaluation: read from a uint8 HDF5 file one batch at a time, and held on the device
    (`val_on_device`, once a job), in images/s; the same top-1 both ways."""
    import tempfile

    import h5py

    n = a.val_images or (10_000 if device.type == "cuda" else 200)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "val.h5"
        with h5py.File(path, "w") as f:
            for name, data in (("images", rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8)),
                               ("labels", rng.integers(0, a.classes, n))):
                f.create_dataset(name, data=data, chunks=(min(256, n), *data.shape[1:]) if data.ndim > 1 else None)
        topk_accuracy(model, path, device=device, dtype=dtype)  # warm-up (and the page cache)
        out = {}
        for how, val in (("uint8 HDF5, one batch at a time", lambda: path),
                         ("held on the device (read once a job)", lambda: val_on_device(str(path), device))):
            t0 = time.perf_counter()
            v = val()
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            acc = topk_accuracy(model, v, device=device, dtype=dtype)
            out[how] = (n / (time.perf_counter() - t0), t_load, acc[1])
    print(f"| validation ({n:,} images, {res} px) | images/s | load s | top-1 |\n|---|---|---|---|")
    for how, (r, t_load, top1) in out.items():
        print(f"| {how} | {r:,.0f} | {t_load:.2f} | {top1:.4f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--arch", default="resnet18", help="the student")
    ap.add_argument("--teacher-arch", help="the teacher (default: --arch)")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS, help="ours: as evaluate.precision")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (a local evaluation job uses one)")
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--images", type=int, default=1000, help="size of the (random) distilled set held in memory")
    ap.add_argument("--compile", default="default", help="torch.compile mode of the third version ('never': skip it)")
    ap.add_argument("--compile-cpu", action="store_true", help="compile on the CPU too (slow; the CPU teacher is not)")
    ap.add_argument("--val-images", type=int, help="validation images (default: 10,000 on CUDA, 200 on the CPU)")
    ap.add_argument("--repeats", type=int, default=1, help="time reference and ours alternately this many times")
    ap.add_argument("--rates-out", help="append our img/s to this file (bench/rates.jsonl: the cost model)")
    a = ap.parse_args()
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    cuda = device.type == "cuda"
    torch.set_num_threads(a.threads)
    dtype = autocast_dtype(device, a.precision)
    res, batch, steps = a.resolution or (224 if cuda else 64), a.batch or (100 if cuda else 32), a.steps or (50 if cuda else 3)
    if cuda:
        torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    x_uint8 = rng.integers(0, 256, (a.images, res, res, 3), dtype=np.uint8)

    def models():
        small = res <= 64  # the 3x3 stem of small images, as `d3hr evaluate` builds its students
        s = create_classifier(a.arch, a.classes, 3, small_input=small, resolution=res, seed=0)
        t = create_classifier(a.teacher_arch or a.arch, a.classes, 3, small_input=small, resolution=res, seed=1)
        return s, t

    # ours: d3hr.evaluate's step, as train_student sets it up
    fmt = MEMORY_FORMAT
    student, teacher = models()
    batches = _Batches(x_uint8, device, fmt)
    student = student.to(device, memory_format=fmt)
    teacher = frozen_for_inference(teacher.to(device, memory_format=fmt), batches(torch.arange(batch)))
    opt = optimizer(student, 1e-3, 0.01, fused=cuda)
    gen, nrng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    dgen = torch.Generator(device).manual_seed(0) if cuda else gen
    nets = {"student": student, "teacher": teacher}

    def old():  # host draws, copied to the device every step
        idx = torch.randint(0, a.images, (batch,), generator=gen)
        return student_step(student, teacher, batches(idx), None, opt, gen, nrng, "cutmix", 20.0, device, dtype)

    def ours():  # device draws (CutMix's box on the host), with the models of `nets` (compiled or not)
        idx = torch.randint(0, a.images, (batch,), generator=dgen, device=device)
        return student_step(nets["student"], nets["teacher"], batches(idx), None, opt, dgen, nrng, "cutmix", 20.0,
                            device, dtype, host_gen=gen)

    # reference: the same step in plain fp32, NCHW, the set as float32 on the device
    r_student, r_teacher = (m.to(device) for m in models())
    r_teacher.eval()
    x_float = torch.from_numpy(x_uint8).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1).contiguous()
    r_opt = torch.optim.AdamW(r_student.parameters(), lr=1e-3, weight_decay=0.01)
    r_gen, r_rng = torch.Generator().manual_seed(0), np.random.default_rng(0)

    def reference():
        r_student.train()
        idx = torch.randint(0, a.images, (batch,), generator=r_gen).to(device)
        x = random_resized_crop_flip(x_float[idx], r_gen)
        x, _, _ = cutmix(x, r_gen, r_rng)
        out = r_student(x)
        with torch.no_grad():
            target = r_teacher(x)
        loss = kd_loss(out, target, 20.0)
        r_opt.zero_grad(set_to_none=True)
        loss.backward()
        r_opt.step()
        return loss.detach()

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    teacher_name = a.teacher_arch or a.arch
    print(f"# {name}; {a.arch} student + {teacher_name} teacher, {res} px, batch {batch}, {steps} timed steps, torch {torch.__version__}")
    trios = [(rate(reference, steps, batch, device), rate(old, steps, batch, device), rate(ours, steps, batch, device))
             for _ in range(a.repeats)]
    if a.repeats > 1:
        print("repeats (reference, host draws, device draws): " +
              "; ".join(", ".join(f"{v:,.0f}" for v in t) for t in trios))
    r_ref, r_old, r_ours = (float(np.median(v)) for v in zip(*trios))  # medians over the repeats
    r_comp = compile_s = None
    if a.compile != "never" and (cuda or a.compile_cpu):
        if not cuda:  # a TorchScript teacher cannot be compiled: the eager eval copy instead
            teacher = models()[1].to(device, memory_format=fmt).eval()
        nets["student"] = torch.compile(student, mode=a.compile, dynamic=False)
        nets["teacher"] = torch.compile(teacher, mode=a.compile, dynamic=False)
        t0 = time.perf_counter()
        float(ours())  # the first step compiles (a job pays this once per shape and mode)
        compile_s = time.perf_counter() - t0
        r_comp = rate(ours, steps, batch, device)
    eager_teacher = models()[1].to(device, memory_format=fmt).eval()  # FlopCounterMode does not see into TorchScript
    flops = step_flops(student, eager_teacher, batches(torch.arange(batch)), dtype, device)
    peak = peak_tflops(device)

    def fl(r):
        achieved = flops * r / batch / 1e12
        share = f"{100 * achieved / peak:.1f} %" if peak else "-"
        return f"{achieved:.3g} | {share}"

    print("| step | images/s | ratio to host draws | model TFLOP/s | share of bf16 peak |\n|---|---|---|---|---|")
    print(f"| reference (fp32, NCHW, float32 set) | {r_ref:,.0f} | {r_ref / r_old:.2f} | {fl(r_ref)} |")
    prec = "bf16 autocast" if dtype is not None else "fp32"
    ours_name = f"{prec}, channels_last, uint8 set on the device" if cuda else f"{prec}, channels_last, uint8 set, frozen teacher"
    print(f"| d3hr, host draws ({ours_name}) | {r_old:,.0f} | 1.00 | {fl(r_old)} |")
    print(f"| d3hr, device draws | {r_ours:,.0f} | {r_ours / r_old:.2f} | {fl(r_ours)} |")
    if r_comp:
        print(f"| d3hr, device draws + torch.compile ({a.compile}; compiled in {compile_s:.1f} s) | {r_comp:,.0f} | "
              f"{r_comp / r_old:.2f} | {fl(r_comp)} |")
    print(f"{flops / batch / 1e9:.2f} GFLOP per image and step; peak: "
          f"{f'{peak:.0f} TFLOP/s dense bf16' if peak else 'not known for this device'}")
    validation(nets["student"], a, res, device, dtype)
    if a.rates_out:
        from rates import append_rate

        append_rate(a.rates_out, "evaluate_train", max(r_ours, r_comp or 0), "img/s", name,
                    "python bench/eval_throughput.py " + " ".join(sys.argv[1:]), arch=a.arch, teacher=teacher_name,
                    batch=batch, resolution=res, compile=a.compile if r_comp and r_comp > r_ours else "never")
    if cuda:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
        imgs = 1000 * 10 * 300  # ImageNet IPC 10, 300 epochs
        print(f"ImageNet IPC 10, 300 epochs: {imgs:,} images / {r_ours:,.0f} images/s = {imgs / r_ours / 60:.1f} "
              f"GPU-minutes of training steps per student (plus 10 validation passes)")


if __name__ == "__main__":
    main()
