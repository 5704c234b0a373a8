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
CPU teacher frozen by TorchScript (`d3hr.evaluate.student_step`). Reference: the same augmentation and loss on a
float32 NCHW set on the device, fp32 eager student and teacher (torch's default TF32 convolutions), AdamW's default
implementation. Prints images/s of each, the ratio, and the GPU-hours of an ImageNet IPC-10 evaluation (1,000
classes x 10 images x 300 epochs) at our rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from d3hr.device import PRECISIONS  # noqa: E402
from d3hr.evaluate import (  # noqa: E402
    MEMORY_FORMAT, _Batches, autocast_dtype, kd_loss, optimizer, student_step)
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
    ap.add_argument("--compile", action="store_true", help="also time our step with torch.compile'd student and teacher")
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

    def ours():
        idx = torch.randint(0, a.images, (batch,), generator=gen)
        return student_step(student, teacher, batches(idx), None, opt, gen, nrng, "cutmix", 20.0, device, dtype)

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
    pairs = [(rate(reference, steps, batch, device), rate(ours, steps, batch, device)) for _ in range(a.repeats)]
    if a.repeats > 1:
        print("repeats (reference, ours, ratio): " + "; ".join(f"{r:,.0f}, {o:,.0f}, {o / r:.2f}" for r, o in pairs))
    r_ref, r_ours = (float(np.median(v)) for v in zip(*pairs))  # medians over the repeats
    a.compile = a.compile and cuda  # the CPU teacher is a frozen TorchScript module
    if a.compile:
        student, teacher = torch.compile(student), torch.compile(teacher)
        r_comp = rate(ours, steps, batch, device)
    print("| step | images/s | ratio |\n|---|---|---|")
    print(f"| reference (fp32, NCHW, float32 set) | {r_ref:,.0f} | 1.00 |")
    prec = "bf16 autocast" if dtype is not None else "fp32"
    ours_name = f"{prec}, channels_last, uint8 set on the device" if cuda else f"{prec}, channels_last, uint8 set, frozen teacher"
    print(f"| d3hr ({ours_name}) | {r_ours:,.0f} | {r_ours / r_ref:.2f} |")
    if a.compile:
        print(f"| d3hr + torch.compile | {r_comp:,.0f} | {r_comp / r_ref:.2f} |")
    if a.rates_out:
        from rates import append_rate

        append_rate(a.rates_out, "evaluate_train", r_ours, "img/s", name, "python bench/eval_throughput.py " +
                    " ".join(sys.argv[1:]), arch=a.arch, teacher=teacher_name, batch=batch, resolution=res)
    if cuda:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
        imgs = 1000 * 10 * 300  # ImageNet IPC 10, 300 epochs
        print(f"ImageNet IPC 10, 300 epochs: {imgs:,} images / {r_ours:,.0f} images/s = {imgs / r_ours / 60:.1f} "
              f"GPU-minutes of training steps per student (plus 10 validation passes)")


if __name__ == "__main__":
    main()
