"""Evaluation (docs/method.md §6): the KD loss, augmentation, student training, baselines and tables."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from d3hr.baselines import kmeans
from d3hr.augment import cutmix, random_resized_crop_flip
from d3hr.evaluate import kd_loss, train_student
from d3hr.nets import create_classifier
from d3hr.tables import collect, write_tables


def test_kd_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3
    T = 20.0
    p = torch.softmax(t.double() / T, 1)
    logq = torch.log_softmax(s.double() / T, 1)
    direct = (p * (p.log() - logq)).sum(1).mean()  # KL(p || q), batch mean, no T^2
    assert kd_loss(s, t, T).item() == pytest.approx(direct.item(), rel=1e-5)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_random_resized_crop_flip_full_crop_is_identity_or_mirror():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = random_resized_crop_flip(x, g, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    for i in range(2):
        assert torch.allclose(y[i], x[i], atol=1e-4) or torch.allclose(y[i], x[i].flip(-1), atol=1e-4)
    z = random_resized_crop_flip(x, g)  # random crops: same shape, values within the input's range
    assert z.shape == x.shape and z.min() >= x.min() - 1e-4 and z.max() <= x.max() + 1e-4


def test_cutmix_box_area_matches_lambda():
    x = torch.zeros(4, 1, 16, 16)
    x[1::2] = 1.0
    g = torch.Generator().manual_seed(1)
    mixed, perm, lam = cutmix(x, g, np.random.default_rng(0))
    pasted = (mixed != x).float().mean(dim=(1, 2, 3))
    for i in range(4):  # the pasted fraction is 1 - lam where the partner differs
        if x[i].mean() != x[perm[i]].mean():
            assert float(pasted[i]) == pytest.approx(1 - lam, abs=1e-6)


def test_student_learns_from_teacher():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    x[y == 0, :8] = 255  # make the classes separable
    x[y == 1, 8:] = 255
    x[y == 2, :, :8] = 255
    x[y == 3, :, 8:] = 0
    torch.manual_seed(0)
    teacher = create_classifier("convnet_tiny", 4, 3, resolution=16)
    student = create_classifier("convnet_tiny", 4, 3, resolution=16)
    before = [p.detach().clone() for p in student.parameters()]
    res = train_student(student, teacher, x, y, (x, y), steps=30, batch_size=16, lr=1e-2, weight_decay=0.0, seed=0,
                        temperature=1.0)
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert res["loss_last"] < res["loss_first"]
    assert 0 <= res["top1"] <= 1 and res["top5"] == 1.0  # 4 classes: top-5 always hits
    hard = train_student(create_classifier("convnet_tiny", 4, 3, resolution=16), None, x, y, (x, y), steps=30,
                         batch_size=16, lr=1e-2, weight_decay=0.0, seed=0, hard_label=True)
    assert hard["loss_last"] < hard["loss_first"]


def test_precision_picks_the_autocast_and_records_it():
    """evaluate.precision: fp32 never autocasts, bf16 always, auto only where the hardware computes bf16 natively;
    a bf16 student trains on the CPU like an fp32 one, the teacher's bf16 soft labels stay close to its fp32 ones,
    and the JSON records which arithmetic ran."""
    from d3hr.evaluate import autocast_dtype
    from d3hr.nets import frozen_for_inference

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None and autocast_dtype(cpu, "bf16") == torch.bfloat16
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if native else None)
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype(cpu, "fp16")
    teacher = create_classifier("resnet_tiny", 4, 3, resolution=16, seed=0).eval()
    x = torch.randn(8, 3, 16, 16)
    frozen = frozen_for_inference(teacher, x)
    with torch.no_grad():
        p32 = torch.softmax(frozen(x) / 20, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            p16 = torch.softmax(frozen(x).float() / 20, 1)
    assert float((p32 - p16).abs().max()) < 1e-3  # the soft labels at the authors' temperature
    rng = np.random.default_rng(0)
    xs, ys = rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8), np.arange(24) % 4
    runs = {p: train_student(create_classifier("convnet_tiny", 4, 3, resolution=16, seed=0), teacher, xs, ys,
                             (xs, ys), steps=12, batch_size=8, lr=1e-2, weight_decay=0.0, seed=0, precision=p)
            for p in ("fp32", "bf16")}
    assert runs["fp32"]["autocast"] == "none" and runs["bf16"]["autocast"] == "bf16"
    assert runs["bf16"]["precision"] == "bf16"
    assert all(np.isfinite(r["loss_last"]) for r in runs.values())
    assert runs["bf16"]["loss_first"] == pytest.approx(runs["fp32"]["loss_first"], rel=0.05)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    x = np.concatenate([c + rng.normal(0, 0.1, (30, 2)) for c in centres])
    got = kmeans(x, 3, seed=0)
    assert sorted(map(tuple, np.round(got))) == sorted(map(tuple, centres))


def test_tables_aggregate_exactly(tmp_path):
    rows = []
    for method, base in (("d3hr", 0.50), ("random_real", 0.30)):
        for ipc in (1, 10):
            for seed in range(3):
                r = {"method": method, "ipc": str(ipc), "student": "convnet", "seed": seed,
                     "top1": base + 0.01 * seed + ipc / 100, "top5": 0.9, "top1_best_last": 0.6,
                     "best_step": 10, "steps": 10, "n_train_images": ipc * 10, "train_seconds": 1.0}
                p = tmp_path / f"{method}-{ipc}-{seed}.json"
                p.write_text(json.dumps(r))
                rows.append(p)
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"method": "full", "ipc": "all", "student": "convnet", "seed": 0, "top1": 0.9,
                                "top1_best_last": 0.95}))
    collect(rows).to_csv(tmp_path / "a.csv", index=False)
    collect([full]).to_csv(tmp_path / "b.csv", index=False)
    df, s = write_tables([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "out")
    assert len(df) == 13
    cell = s[(s.method == "d3hr") & (s.ipc == "10")].iloc[0]
    vals = [100 * (0.5 + 0.01 * k + 0.1) for k in range(3)]
    assert cell["mean"] == pytest.approx(np.mean(vals)) and cell["std"] == pytest.approx(np.std(vals, ddof=1))
    md = (tmp_path / "out" / "accuracy.md").read_text()
    assert "| d3hr | 52.0 ± 1.0 | 61.0 ± 1.0 |  |" in md
    assert md.index("| random_real") < md.index("| d3hr |") < md.index("| full")
    assert "IPC all / convnet" in md and "90.0" in md
    best = md[md.index("The authors' reported figure") - 400:]  # the second table: best of the last 10% of training
    assert "| d3hr | 60.0 ± 0.0 | 60.0 ± 0.0 |  |" in md and "95.0" in best
    tex = (tmp_path / "out" / "accuracy.tex").read_text()
    assert "d3hr & $52.0_{\\pm 1.0}$ & $61.0_{\\pm 1.0}$" in tex
    assert len(pd.read_csv(tmp_path / "out" / "accuracy.csv")) == 13


def test_teacher_check_table_equals_direct_accuracy(tmp_path):
    from conftest import make_dataset, make_teacher
    from d3hr.data import load_split
    from d3hr.tables import teacher_check_table
    from d3hr.nets import load_classifier
    from d3hr.train import accuracy

    make_dataset(tmp_path / "d", classes=("a", "b"), n_train=5)
    t = make_teacher(tmp_path / "t.pt", ["a", "b"])
    sets = {("d3hr", 5): [tmp_path / "d" / "train" / "a", tmp_path / "d" / "train" / "b"]}
    got = teacher_check_table(t, sets, {"a": 0, "b": 1}, 16)
    x, y = load_split(tmp_path / "d", "train", ["a", "b"], 16, 3)
    assert got.to_dict("records") == [{"method": "d3hr", "ipc": "5", "images": 10, "classes": 2,
                                       "teacher_top1": accuracy(load_classifier(t)[0], x, y)}]


def test_authors_batch_size_and_epoch_budget():
    from d3hr.evaluate import authors_batch_size, budget_steps

    # validation/argument.py of the authors: by IPC, x2 for 100 classes (not 1,000), at most IPC x classes
    assert [authors_batch_size(i, 10, 10 * i) for i in (1, 9, 10, 49, 50, 100)] == [10, 15, 50, 50, 100, 100]
    assert authors_batch_size(1, 1000, 1000) == 15 and authors_batch_size(10, 100, 1000) == 100
    assert authors_batch_size("all", 10, 9000) == 100 and authors_batch_size(50, 100, 5000) == 200
    # epochs over the set: IPC 10 x 10 classes with batch 50 is 2 steps an epoch; a partial last batch counts
    assert budget_steps(100, 50, 40) == 80 and budget_steps(9000, 100, 12) == 1080 and budget_steps(10, 15, 3) == 3


def test_frozen_teacher_gives_the_eager_outputs():
    from d3hr.nets import frozen_for_inference

    torch.manual_seed(0)
    teacher = create_classifier("resnet_tiny", 5, 3, resolution=16).train()
    x = torch.randn(6, 3, 16, 16)
    for _ in range(3):  # move the batch-norm running statistics off their initial values
        teacher(torch.randn(8, 3, 16, 16) * 2 + 1)
    teacher.eval()
    frozen = frozen_for_inference(teacher, x)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), teacher(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(frozen(x[:3] * 0.5), teacher(x[:3] * 0.5), atol=1e-4, rtol=1e-4)
    assert teacher.training is False and any(m.training is False for m in teacher.modules())


def test_convnet_uses_batch_norm_like_the_authors_and_instance_norm_on_request():
    bn = create_classifier("convnet_tiny", 4, 3, resolution=16, seed=0)
    inorm = create_classifier("convnet_tiny_in", 4, 3, resolution=16, seed=0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in inorm.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in inorm.modules())


def test_kmeans_centroids_are_noised_to_the_timestep_like_the_forward_process(tmp_path):
    from d3hr.baselines import kmeans_latents
    from d3hr.h5io import provenance, read_attrs, write_h5
    from d3hr.models import build_scheduler

    import h5py

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 0.1, (20, 2, 2, 2)), rng.normal(3, 0.1, (20, 2, 2, 2))]).astype(np.float32)
    write_h5(tmp_path / "lat.h5", {"latents": z}, provenance(stage="encode", cls="cat", label=1))
    abar = build_scheduler().alphas_cumprod.double()
    kmeans_latents(tmp_path / "lat.h5", tmp_path / "vae.h5", 2, seed=0)
    kmeans_latents(tmp_path / "lat.h5", tmp_path / "d4m.h5", 2, seed=0, timestep=600, alphas_cumprod=abar, label=1,
                   num_steps=50, guidance=4.0)
    with h5py.File(tmp_path / "vae.h5") as f:
        c, a_vae = f["latents"][:], read_attrs(f)
    with h5py.File(tmp_path / "d4m.h5") as f:
        zt, a = f["latents"][:], read_attrs(f)
    assert a_vae["timestep"] == -1 and a["timestep"] == 600 and a["label"] == 1 and a["guidance"] == 4.0
    assert sorted(np.round(c.mean(axis=(1, 2, 3))).tolist()) == [-3.0, 3.0]  # the two clusters' centroids
    eps = (zt - abar[600].sqrt().item() * c) / (1 - abar[600]).sqrt().item()  # z_t = sqrt(abar) c + sqrt(1-abar) eps
    assert abs(eps.mean()) < 0.6 and 0.5 < eps.std() < 1.5  # 16 values of standard noise
    with pytest.raises(Exception, match="needs the schedule and the label"):
        kmeans_latents(tmp_path / "lat.h5", tmp_path / "x.h5", 2, seed=0, timestep=600)


def test_decode_start_is_the_inverted_timestep_or_one_grid_step_above():
    from d3hr import D3HRError
    from d3hr.ddim import timestep_grid
    from d3hr.decode import start_timestep

    grid = timestep_grid(1000, 50)
    assert start_timestep(600, grid) == 600 and start_timestep(600, grid, "above") == 620
    assert start_timestep(980, grid, "above") == 980  # pure noise at the last grid step starts there
    with pytest.raises(D3HRError, match="inverted' or 'above"):
        start_timestep(600, grid, "below")


def test_authors_schedule_per_epoch_and_no_decay_on_biases_and_norms():
    from d3hr.archs import student_lr
    from d3hr.evaluate import lr_factor, optimizer

    # eq. (6.2): 0.5 (1 + cos(pi e / 2E)) runs from 1 to 0.5, at e = E/2: 0.5 (1 + cos(pi / 4))
    assert lr_factor(0) == 1.0 and lr_factor(1) == pytest.approx(0.5)
    assert lr_factor(0.5) == pytest.approx(0.5 * (1 + np.sqrt(0.5)))
    assert lr_factor(0, "cosine") == 1.0 and lr_factor(0.5, "cosine") == pytest.approx(0.5)
    assert lr_factor(1, "cosine") == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0.5, "linear")
    model = create_classifier("convnet_tiny", 4, 3, resolution=16)
    groups = optimizer(model, 1e-3, 0.01).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.01 for p in g["params"]}
    for name, p in model.named_parameters():  # conv / linear weights decay; biases and norm parameters do not
        assert (id(p) in decayed) == (p.ndim > 1), name
    assert student_lr("resnet50") == 1e-3 and student_lr("mobilenetv2_100") == 2.5e-3 and student_lr("convnet") == 1e-3
    assert student_lr("resnet50", 0.2) == 0.2
    with pytest.raises(Exception, match="set evaluate.lr"):
        student_lr("deit_tiny_patch16_224")


def test_epoch_budget_steps_the_rate_once_per_epoch_and_evaluates_the_last_epochs(monkeypatch):
    import d3hr.evaluate as ev

    rates = []
    real_opt = ev.optimizer

    def spy(model, lr, wd, fused=False):
        opt = real_opt(model, lr, wd, fused)
        opt.register_step_pre_hook(lambda o, args, kwargs: rates.append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(ev, "optimizer", spy)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (10, 16, 16, 3), dtype=np.uint8), np.arange(10) % 2
    # 10 images, batch 4: 3 batches per epoch (the last partial), 12 epochs -> 36 steps
    res = ev.train_student(create_classifier("convnet_tiny", 2, 3, resolution=16), None, x, y, (x, y), steps=36,
                           batch_size=4, lr=1e-3, weight_decay=0.01, seed=0, hard_label=True, epochs=12)
    assert res["batches_per_epoch"] == 3 and len(rates) == 36
    assert rates == pytest.approx([1e-3 * ev.lr_factor((i // 3) / 12) for i in range(36)])
    assert [e["epoch"] for e in res["evals"]] == list(range(4, 13))  # after each epoch of index > 2: the last 9
    assert res["top1_best_last"] == max(e["top1"] for e in res["evals"]) and res["top1"] == res["evals"][-1]["top1"]


def test_protocol_authors_fills_its_values_and_refuses_a_different_one():
    from d3hr import D3HRError
    from d3hr.config import PROTOCOLS, apply_protocol

    cfg = {"evaluate": {"protocol": "authors", "epochs": 300}}
    apply_protocol(cfg)
    assert cfg["evaluate"] == {"protocol": "authors", "epochs": 300, **PROTOCOLS["authors"]}
    assert cfg["evaluate"]["val_crop"] == 0.875 and cfg["evaluate"]["lr"] == 0
    with pytest.raises(D3HRError, match=r"evaluate.steps=300 differs from protocol 'authors'"):
        apply_protocol({"evaluate": {"protocol": "authors", "steps": 300}})
    custom = {"evaluate": {"protocol": "custom", "steps": 300}}
    assert apply_protocol(custom) == {"evaluate": {"protocol": "custom", "steps": 300}}


def test_prepare_val_resizes_then_centre_crops_and_batches_read_it_back(tmp_path):
    from PIL import Image

    from d3hr.valset import prepare_val, val_batches

    rng = np.random.default_rng(0)
    dirs = []
    for c in ("a", "b"):
        d = tmp_path / "val" / c
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")
        dirs.append(d)
    prepare_val(dirs, [4, 7], 14, 3, 0.875, tmp_path / "val.h5", classes=["a", "b"])
    # 0.875: the short side to 16 (= 14 / 0.875), then the centre 14 x 14 (ImageNet: 256, then 224)
    from d3hr.data import load_image

    want = np.stack([load_image(f, 16, 3)[1:15, 1:15] for d in dirs for f in sorted(d.glob("*.png"))])
    got = list(val_batches(tmp_path / "val.h5", size=4))
    assert [len(b) for b, _ in got] == [4, 2]
    assert np.array_equal(np.concatenate([b for b, _ in got]), want)
    assert np.concatenate([lab for _, lab in got]).tolist() == [4, 4, 4, 7, 7, 7]


def test_torchvision_builder_builds_resnets_as_the_authors_code():
    """`evaluate.builder: torchvision` (protocol authors): ResNet students from torchvision.models, whose blocks keep
    their last BatchNorm at 1; timm's create_model zero-initialises it (zero_init_last). Other students: unchanged."""
    import torchvision

    from d3hr.nets import create_classifier

    tv = create_classifier("resnet18", 10, 3, small_input=False, resolution=224, seed=0, builder="torchvision")
    tm = create_classifier("resnet18", 10, 3, small_input=False, resolution=224, seed=0, builder="timm")
    assert isinstance(tv, torchvision.models.ResNet) and not isinstance(tm, torchvision.models.ResNet)
    assert tv.state_dict().keys() == tm.state_dict().keys()  # the same architecture, the same parameter names
    assert all((b.bn2.weight == 1).all() for b in tv.layer1) and all((b.bn2.weight == 0).all() for b in tm.layer1)
    small = create_classifier("resnet18", 10, 1, small_input=True, resolution=32, seed=0, builder="torchvision")
    assert small.conv1.kernel_size == (3, 3) and small.conv1.in_channels == 1
    a = create_classifier("convnet_tiny", 10, 3, resolution=32, seed=0, builder="torchvision")
    b = create_classifier("convnet_tiny", 10, 3, resolution=32, seed=0, builder="timm")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


class _Recorder(torch.nn.Module):
    """A linear classifier that keeps the batches it was given (its forward input)."""

    def __init__(self, n_in, n_classes):
        super().__init__()
        self.fc = torch.nn.Linear(n_in, n_classes)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


def test_without_augmentation_student_and_teacher_see_the_plain_batch():
    """evaluate.augment false (the augmentation-robust score): no crop, flip or mix, nothing drawn from the
    generators; the teacher's soft labels are its outputs on the same plain batch (hard labels: plain cross-entropy)."""
    from d3hr.evaluate import student_step

    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    student, teacher = _Recorder(3 * 8 * 8, 4), _Recorder(3 * 8 * 8, 4)
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    state, rng_state = gen.get_state(), rng.bit_generator.state
    opt = torch.optim.SGD(student.parameters(), lr=0.0)
    loss = student_step(student, teacher, x, None, opt, gen, rng, "cutmix", 4.0, torch.device("cpu"), augment=False)
    assert torch.equal(student.seen[0], x) and torch.equal(teacher.seen[0], x)
    assert torch.equal(gen.get_state(), state) and rng.bit_generator.state == rng_state
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(kd_loss(student.fc(x.flatten(1)), teacher.fc(x.flatten(1)), 4.0)))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = student_step(student, None, x, y, opt, gen, rng, "cutmix", 4.0, torch.device("cpu"), augment=False)
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(student.fc(x.flatten(1)), y)))
    student.seen.clear()
    student_step(student, teacher, x, None, opt, gen, rng, "cutmix", 4.0, torch.device("cpu"))  # with: cropped
    assert not torch.equal(student.seen[0], x)


def test_evaluate_set_without_augmentation_records_it(tmp_path):
    """`d3hr evaluate --no-augment`: a student trained without augmentation, `augment: false` in its JSON, and
    tables.collect keeps the column; the accuracy tables leave the run out as they leave out hard-label runs."""
    from conftest import make_dataset, make_teacher
    from d3hr.cli import build_parser
    from d3hr.evaluate import evaluate_set
    from d3hr.valset import prepare_val

    root = make_dataset(tmp_path / "d", n_train=4, n_val=2)
    teacher = make_teacher(tmp_path / "t.pt", ["cat", "dog"])
    prepare_val([str(root / "val" / c) for c in ("cat", "dog")], [0, 1], 16, 3, 1.0, str(tmp_path / "val.h5"))
    common = dict(class_dirs=[str(root / "train" / c) for c in ("cat", "dog")], val=str(tmp_path / "val.h5"),
                  labels=[0, 1], teacher=str(teacher), student="convnet_tiny", method="random_real", ipc="4", seed=0,
                  resolution=16, channels=3, epochs=1, steps=4, min_steps=0, batch_size=4, lr=1e-3, weight_decay=0.01,
                  schedule="authors", mix="cutmix", temperature=0, precision="fp32", compile="never", builder="timm",
                  device=torch.device("cpu"))
    res = evaluate_set(**common, out=str(tmp_path / "noaug.json"), augment=False)
    got = json.loads((tmp_path / "noaug.json").read_text())
    assert got["augment"] is False and res["augment"] is False and got["hard_label"] is False and got["steps"] == 4
    evaluate_set(**common, out=str(tmp_path / "aug.json"))
    assert json.loads((tmp_path / "aug.json").read_text())["augment"] is True
    df = collect([tmp_path / "aug.json", tmp_path / "noaug.json"])
    assert list(df.augment) == [True, False]
    df.to_csv(tmp_path / "ipc4.csv", index=False)
    out, _ = write_tables([tmp_path / "ipc4.csv"], tmp_path / "tables")
    assert len(out) == 1 and out.augment.all()
    sub = next(a for a in build_parser()._actions if a.dest == "stage").choices["evaluate"]
    flags = {o for a in sub._actions for o in a.option_strings}
    assert {"--augment", "--no-augment"} <= flags
