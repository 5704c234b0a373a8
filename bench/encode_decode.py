"""Benchmark: an encode job's image decoding (d3hr.data.iter_image_batches) on 1 thread and on several, in img/s.

Makes `--n` JPEG files of ImageNet's typical size (500 x 375, quality 90, smooth random content: about ImageNet's
file size) and reads them as encode does: decode, resize the short side to 256, centre-crop, batches of 64. The
thread counts run one after another in this process; the batches are checked equal. The VAE on an H200 encodes about
730 img/s (docs/benchmarks.md): decoding must keep up with it, or the GPU waits.

    python bench/encode_decode.py                       # 1 thread and every core
    python bench/encode_decode.py --threads 1 2 4 --n 512 --rates-out bench/rates.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_jpegs(folder: Path, n: int, seed: int = 0) -> int:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)  # smooth content: upsampled noise, plus grain
        img = np.asarray(Image.fromarray(small).resize((500, 375), Image.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
        p = folder / f"img_{i:05d}.JPEG"
        Image.fromarray(img).save(p, quality=90)
        total += p.stat().st_size
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=384)
    p.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rates-out", help="append the measured rates as JSON lines")
    a = p.parse_args(argv)
    import numpy as np

    from d3hr.data import iter_image_batches

    with tempfile.TemporaryDirectory() as tmp:
        size = make_jpegs(Path(tmp), a.n)
        files = sorted(Path(tmp).iterdir())
        print(f"{a.n} JPEGs of 500 x 375, {size / a.n / 1e3:.0f} kB each; decode + resize to {a.resolution}, "
              f"batches of {a.batch_size}, {os.cpu_count()} cores")
        ref, rows = None, []
        for t in a.threads:
            list(iter_image_batches(files[: a.batch_size], a.resolution, 3, a.batch_size, threads=t))  # warm-up
            t0 = time.perf_counter()
            out = np.concatenate([b for _, b in iter_image_batches(files, a.resolution, 3, a.batch_size, threads=t)])
            s = time.perf_counter() - t0
            ref = out if ref is None else ref
            assert np.array_equal(ref, out), "the batches differ between thread counts"
            rows.append({"stage": "jpeg_decode", "threads": t, "cores": os.cpu_count(), "images": a.n,
                         "seconds": round(s, 3), "img_per_s": round(a.n / s, 1)})
        base = rows[0]["img_per_s"]
        print("| threads | s | img/s | x 1 thread |\n|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['threads']} | {r['seconds']:.2f} | {r['img_per_s']:,.0f} | {r['img_per_s'] / base:.2f} |")
    if a.rates_out:  # the same fields as every other rate (bench/rates.py): stage, rate, unit, device, date, source
        import platform

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from rates import append_rate

        for r in rows:
            append_rate(a.rates_out, "jpeg_decode", r["img_per_s"], "img/s", f"CPU {platform.processor() or ''}".strip(),
                        "python bench/encode_decode.py " + " ".join(sys.argv[1:]), threads=r["threads"],
                        cores=r["cores"], images=r["images"], resolution=a.resolution)


if __name__ == "__main__":
    main()
