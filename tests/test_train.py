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
