"""Training of the embedded default's DiT: classifier-free guidance needs the all-null condition to be trained."""

from __future__ import annotations

import torch

from d3hr.models import build_dit, load_ldm
from d3hr.train import disable_label_dropout, drop_labels


def _dit(num_classes=5):
    torch.manual_seed(0)
    dit = build_dit(num_classes, 8, 4, hidden_size=32, num_heads=2, num_layers=3)
    # zero-initialised adaLN-zero blocks ignore the condition; random weights make every block depend on it
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dit


def _forward(dit, z, t, y):
    return dit(z, timestep=t, class_labels=y).sample


def test_train_mode_with_a_drop_mask_equals_eval_mode_with_null_labels_on_those_rows():
    C, n = 5, 64
    dit = _dit(C)
    assert disable_label_dropout(dit) == 3  # one LabelEmbedding per block
    gen = torch.Generator().manual_seed(0)
    z, t = torch.randn(n, 4, 8, 8, generator=gen), torch.randint(0, 1000, (n,), generator=gen)
    y = torch.randint(0, C, (n,), generator=gen)
    y_drop = drop_labels(y, C, 0.3, torch.Generator().manual_seed(1))
    dropped = y_drop == C
    assert 0 < int(dropped.sum()) < n and torch.equal(y_drop[~dropped], y[~dropped])
    dit.train()
    out_train = _forward(dit, z, t, y_drop)
    dit.eval()
    with torch.no_grad():
        out_null = _forward(dit, z, t, torch.full_like(y, C))
        out_cond = _forward(dit, z, t, y)
    torch.testing.assert_close(out_train[dropped].detach(), out_null[dropped])
    torch.testing.assert_close(out_train[~dropped].detach(), out_cond[~dropped])
    # and the null condition is a different prediction from the conditional one
    assert (out_null - out_cond).abs().max() > 1e-3


def test_diffusers_default_drops_labels_per_block_which_is_what_we_disable():
    """Without `disable_label_dropout`, diffusers' train mode drops labels in each block independently: some rows get a
    mix of kept and dropped labels, matching neither the conditional nor the null prediction."""
    C, n = 5, 256
    dit = _dit(C)
    gen = torch.Generator().manual_seed(0)
    z, t = torch.randn(n, 4, 8, 8, generator=gen), torch.randint(0, 1000, (n,), generator=gen)
    y = torch.randint(0, C, (n,), generator=gen)
    dit.eval()
    with torch.no_grad():
        out_null, out_cond = _forward(dit, z, t, torch.full_like(y, C)), _forward(dit, z, t, y)
        dit.train()
        torch.manual_seed(3)
        out_train = _forward(dit, z, t, y)
    close = lambda a, b: (a - b).flatten(1).abs().max(1).values < 1e-5  # noqa: E731
    neither = ~close(out_train, out_null) & ~close(out_train, out_cond)
    assert int(neither.sum()) > 0  # mixed conditions: the bug the per-sample drop fixes


def test_a_saved_model_loads_with_its_null_row_and_inference_is_unaffected(tmp_path):
    from d3hr.models import build_scheduler, build_vae, save_pipeline

    C = 5
    dit = _dit(C)
    disable_label_dropout(dit)
    vae = build_vae(3, 4, (8, 8), layers_per_block=1, norm_num_groups=4, sample_size=16)
    save_pipeline(tmp_path / "p", dit, vae, build_scheduler(), [f"c{k}" for k in range(C)])
    ldm = load_ldm(tmp_path / "p")
    assert ldm.null_label == C
    # the loaded model (eval mode, as every stage uses it) gives the trained model's null and conditional predictions
    gen = torch.Generator().manual_seed(0)
    z, t = torch.randn(8, 4, 8, 8, generator=gen), torch.randint(0, 1000, (8,), generator=gen)
    for y in (torch.arange(8) % C, torch.full((8,), C)):
        with torch.no_grad():
            torch.testing.assert_close(_forward(ldm.transformer, z, t, y), _forward(dit.eval(), z, t, y))


def test_teacher_precision_trains_in_bf16_or_fp32_and_refuses_others(monkeypatch):
    """train.teacher.precision: fp32 and bf16 both train (the loss falls on a separable toy set, the weights stay
    float32), bf16 autocast really runs (the convolutions see bf16 inputs), and an unknown name is refused."""
    import numpy as np
    import pytest

    from d3hr.nets import create_classifier
    from d3hr.train import train_classifier

    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    x = np.where(y[:, None, None, None] == 1, 220, 30) + rng.integers(0, 30, (64, 16, 16, 3))
    x = x.astype(np.uint8)
    with pytest.raises(ValueError, match="unknown precision"):
        train_classifier(create_classifier("convnet_tiny", 2, 3, resolution=16, seed=0), x, y, 1, 16, 1e-2, 0.0, 0,
                         precision="fp16")
    seen = []
    for precision in ("fp32", "bf16"):
        model = create_classifier("convnet_tiny", 2, 3, resolution=16, seed=0)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        hook = conv.register_forward_hook(lambda m, i, o: seen.append((precision, o.dtype)))
        model = train_classifier(model, x, y, steps=16, batch_size=16, lr=1e-2, weight_decay=0.0, seed=0,
                                 precision=precision)
        hook.remove()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        with torch.no_grad():
            acc = (model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1).argmax(1).numpy() == y).mean()
        assert acc > 0.9, (precision, acc)
    assert {d for p, d in seen if p == "fp32"} == {torch.float32}
    assert {d for p, d in seen if p == "bf16"} == {torch.bfloat16}
