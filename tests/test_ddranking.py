"""d3hr.tables' label-robust and augmentation-robust scores against DD-Ranking's own code, on the same accuracies.

DD-Ranking computes its scores inside `compute_metrics`, between the trainings of its students: here those trainings
are replaced by the given accuracies (its helpers that train a student and draw the random real set), and its own
arithmetic runs on them. ddranking is not a dependency: its metadata asks for numpy < 2 and scipy < 1.16, against
this project's pins, so the test runs where it is importable and is skipped otherwise. To run it without touching the
venv (the package and kornia, which it imports, into a folder of their own):

    .venv/bin/pip install --no-deps --target /tmp/ddr_site ddranking==0.2.0 kornia==0.9.0 kornia_rs==0.2.0
    PYTHONPATH=/tmp/ddr_site .venv/bin/python -m pytest -q tests/test_ddranking.py -p no:xdist

DD-Ranking 0.2.0's accuracies are percentages (`validate` returns utils/meter.py's `100 / batch_size` hits); its
formulas are given the fractions d3hr uses here, so that both compute the same numbers (docs/method.md §7).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

ddranking = pytest.importorskip("ddranking")

from d3hr.tables import augmentation_robust, label_robust  # noqa: E402

SEEDS = (0, 1, 2)
# (set, random real) top-1 per seed, as fractions
AUG = {"set": (0.62, 0.55, 0.71), "random": (0.50, 0.58, 0.60)}
NOAUG = {"set": (0.31, 0.42, 0.25), "random": (0.40, 0.33, 0.45)}
SOFT = AUG
HARD = {"set": (0.45, 0.40, 0.52), "full": (0.80, 0.85, 0.83)}


def _bare(cls, **attrs):
    """An instance of a DD-Ranking metric without its __init__ (which loads datasets and teachers)."""
    obj = object.__new__(cls)
    obj.__dict__.update(dict(use_dist=False, rank=0, world_size=1, ipc=1, num_classes=2, device="cpu",
                             num_eval=len(SEEDS), save_path="unused.csv", label_type="soft", soft_label_mode="M",
                             eval_full_data=True) | attrs)
    return obj


class _Draws:
    """DD-Ranking's helpers, returning the given accuracies: the synthetic set is passed as the string "set", the
    random real set as "random"; the evaluation run (one seed each) is counted by the `set_seed()` that starts it."""

    def __init__(self, monkeypatch, module):
        self.i = -1
        monkeypatch.setattr(module, "set_seed", self.next_run)
        self.saved = {}
        monkeypatch.setattr(module, "save_results", lambda results, path: self.saved.update(results))

    def next_run(self, seed=None):
        self.i += 1

    def random(self, n=4):
        return lambda eval_iter: (None, "random", None, None)[:n]

    def acc(self, table):
        return lambda image_tensor=None, lr=None, **kw: (table[image_tensor][self.i], lr)


def test_augmentation_robust_score_equals_ddranking(monkeypatch):
    from ddranking.metrics import aug_robust

    d = _Draws(monkeypatch, aug_robust)
    m = _bare(aug_robust.AugmentationRobustScore)
    m._get_random_data_helper = d.random()
    m._compute_with_aug_metrics_helper = d.acc(AUG)
    m._compute_without_aug_metrics_helper = d.acc(NOAUG)
    saved = d.saved
    theirs = m.compute_metrics(image_tensor="set", soft_labels=None, syn_lr=0.01, ars_lambda=0.3)
    rows = [dict(method=meth, ipc="1", student="s", seed=s, hard_label=False, augment=aug, top1=t[key][k])
            for k, s in enumerate(SEEDS) for aug, t in ((True, AUG), (False, NOAUG))
            for meth, key in (("d3hr", "set"), ("random_real", "random"))]
    df = pd.DataFrame(rows)
    ours = augmentation_robust(df, w=0.3).set_index("method").loc["d3hr"]
    assert ours.ars == pytest.approx(theirs["augmentation_robust_score_mean"], rel=1e-12)
    assert ours.ior_aug == pytest.approx(theirs["with_aug_scores_mean"], rel=1e-12)
    assert ours.ior_noaug == pytest.approx(theirs["without_aug_scores_mean"], rel=1e-12)
    for k, s in enumerate(SEEDS):  # per seed too (DD-Ranking's std is ddof 0, ours ddof 1: compare the values)
        one = augmentation_robust(df[df.seed == s], w=0.3).set_index("method").loc["d3hr"]
        assert one.ars == pytest.approx(saved["ars_list"][k], rel=1e-12)
        assert one.ior_aug == pytest.approx(saved["with_aug_scores"][k], rel=1e-12)
        assert one.ior_noaug == pytest.approx(saved["without_aug_scores"][k], rel=1e-12)
    assert np.std(saved["ars_list"], ddof=1) == pytest.approx(ours.ars_std, rel=1e-12)


def test_label_robust_score_equals_ddranking(monkeypatch):
    from ddranking.metrics import soft_label

    d = _Draws(monkeypatch, soft_label)
    m = _bare(soft_label.LabelRobustScoreSoft)
    m._get_random_data_helper = d.random(n=3)
    m._compute_hard_label_metrics_helper = lambda mode="syn", lr=None, **kw: (
        HARD["full" if mode == "real" else "set"][d.i], lr)
    m._compute_soft_label_metrics_helper = d.acc(SOFT)
    saved = d.saved
    theirs = m.compute_metrics(image_tensor="set", soft_labels=None, syn_lr=0.01, lrs_lambda=0.7)
    rows = []
    for k, s in enumerate(SEEDS):
        rows += [dict(method="d3hr", ipc="1", student="s", seed=s, hard_label=False, top1=SOFT["set"][k]),
                 dict(method="random_real", ipc="1", student="s", seed=s, hard_label=False, top1=SOFT["random"][k]),
                 dict(method="d3hr", ipc="1", student="s", seed=s, hard_label=True, top1=HARD["set"][k]),
                 dict(method="full", ipc="all", student="s", seed=s, hard_label=True, top1=HARD["full"][k])]
    ours = label_robust(pd.DataFrame(rows), w=0.7).set_index("method").loc["d3hr"]
    assert ours.lrs == pytest.approx(theirs["label_robust_score_mean"], rel=1e-12)
    assert ours.hlr == pytest.approx(theirs["hard_label_recovery_mean"], rel=1e-12)
    assert ours.ior == pytest.approx(theirs["improvement_over_random_mean"], rel=1e-12)
    assert np.std(saved["lrs"], ddof=1) == pytest.approx(ours.lrs_std, rel=1e-12)
