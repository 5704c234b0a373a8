"""Representativeness and diversity scores (d3hr.metrics) against brute-force loops, known orderings, and the
label-robust and augmentation-robust scores (d3hr.tables.label_robust, augmentation_robust) against their formulas.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from d3hr.metrics import coverage, diversity, median_bandwidth, mmd, pairwise_distances, set_scores
from d3hr.tables import augmentation_robust, label_robust, write_aug_robust


def _dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


@pytest.fixture()
def xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(5, 3))


def test_mmd_matches_a_brute_force_double_sum(xy):
    x, y = xy
    s = 1.3
    k = lambda a, b: math.exp(-_dist(a, b) ** 2 / (2 * s * s))
    mean = lambda A, B: sum(k(a, b) for a in A for b in B) / (len(A) * len(B))
    expect = math.sqrt(mean(x, x) + mean(y, y) - 2 * mean(x, y))
    assert mmd(x, y, s) == pytest.approx(expect, rel=1e-9)
    assert mmd(x, x, s) == pytest.approx(0.0, abs=1e-6)  # the real set is maximally representative of itself


def test_bandwidth_is_the_median_distance_between_distinct_points(xy):
    x, _ = xy
    d = [_dist(a, b) for a, b in itertools.combinations(x, 2)]
    assert median_bandwidth(x) == pytest.approx(float(np.median(d)))
    assert median_bandwidth(np.zeros((3, 2))) == 1.0


def test_coverage_matches_a_brute_force_loop(xy):
    x, y = xy
    k = 3
    covered = 0
    for i, a in enumerate(x):
        radius = sorted(_dist(a, b) for j, b in enumerate(x) if j != i)[k - 1]
        covered += min(_dist(a, c) for c in y) <= radius
    assert coverage(x, y, k) == pytest.approx(covered / len(x))
    assert coverage(x, x, k) == 1.0  # every real image covers itself


def test_diversity_is_the_mean_distance_between_distinct_points(xy):
    _, y = xy
    d = [_dist(a, b) for a, b in itertools.combinations(y, 2)]
    assert diversity(y) == pytest.approx(sum(d) / len(d))
    assert math.isnan(diversity(y[:1]))


def test_orderings_a_spread_set_beats_a_collapsed_one():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 4))
    spread = real[rng.choice(400, 20, replace=False)]  # a random subset: representative and diverse
    collapsed = np.repeat(real[:1], 20, axis=0) + 1e-3 * rng.normal(size=(20, 4))  # one point, twenty times
    shifted = spread + 3.0  # diverse but off the class
    a, b, c = (set_scores(real, s) for s in (spread, collapsed, shifted))
    assert a["mmd"] < b["mmd"] and a["mmd"] < c["mmd"]
    assert a["coverage"] > b["coverage"] and a["coverage"] > c["coverage"]
    assert a["diversity"] > 100 * b["diversity"] and c["diversity"] == pytest.approx(a["diversity"])
    assert pairwise_distances(real[:3], real[:3]).diagonal() == pytest.approx([0, 0, 0], abs=1e-6)


def test_label_robust_scores_follow_their_formulas():
    rows = []
    acc = {("full", "all"): (0.9, 0.8), ("random_real", "10"): (0.5, 0.3), ("d3hr", "10"): (0.6, 0.45)}
    for (m, ipc), (soft, hard) in acc.items():
        for seed, jitter in ((0, 0.0), (1, 0.02)):
            rows.append(dict(method=m, ipc=ipc, student="s", seed=seed, hard_label=False, top1=soft + jitter))
            rows.append(dict(method=m, ipc=ipc, student="s", seed=seed, hard_label=True, top1=hard + jitter))
    out = label_robust(pd.DataFrame(rows)).set_index("method")
    d = out.loc["d3hr"]
    assert d.hlr == pytest.approx(0.8 - 0.45) and d.ior == pytest.approx(0.6 - 0.5)
    alpha = 0.5 * (0.6 - 0.5) - 0.5 * (0.8 - 0.45)
    assert d.lrs == pytest.approx((math.exp(alpha) - math.exp(-1)) / (math.e - math.exp(-1)))
    assert out.loc["random_real"].ior == pytest.approx(0.0) and d.n == 2
    assert "full" not in out.index


def _ars_rows():
    """Soft-label top-1 with augmentation and without (augment False), two seeds, and runs the score must ignore."""
    acc = {("random_real", "10"): (0.50, 0.40), ("d3hr", "10"): (0.60, 0.30), ("d3hr", "1"): (0.20, 0.10)}
    rows = []
    for (m, ipc), (aug, noaug) in acc.items():
        for seed, jitter in ((0, 0.0), (1, 0.04)):
            rows.append(dict(method=m, ipc=ipc, student="s", seed=seed, hard_label=False, augment=True,
                             top1=aug + jitter))
            rows.append(dict(method=m, ipc=ipc, student="s", seed=seed, hard_label=False, augment=False,
                             top1=noaug + 2 * jitter))
            rows.append(dict(method=m, ipc=ipc, student="s", seed=seed, hard_label=True, augment=True, top1=0.99))
    rows.append(dict(method="full", ipc="all", student="s", seed=0, hard_label=False, augment=True, top1=0.9))
    return pd.DataFrame(rows)


def test_augmentation_robust_score_by_hand():
    """IOR_aug = 0.60 - 0.50 = 0.10, IOR_noaug = 0.30 - 0.40 = -0.10 at both seeds (the jitter is paired), so
    beta = 0.5 * 0.10 + 0.5 * -0.10 = 0 and ARS = (1 - e^-1) / (e - e^-1) = 0.268941...; with w = 0.8,
    beta = 0.08 - 0.02 = 0.06, ARS = (e^0.06 - e^-1) / (e - e^-1) = 0.295250...; random real: beta = 0."""
    out = augmentation_robust(_ars_rows()).set_index(["method", "ipc"])
    d = out.loc[("d3hr", "10")]
    assert d.ior_aug == pytest.approx(0.10) and d.ior_noaug == pytest.approx(-0.10) and d.n == 2
    assert d["aug"] == pytest.approx(0.62) and d["noaug"] == pytest.approx(0.34)
    assert d["noaug_std"] == pytest.approx(np.std([0.30, 0.38], ddof=1))
    assert d.ars == pytest.approx(0.268941, abs=1e-6) and d.ars_std == pytest.approx(0.0, abs=1e-12)
    assert out.loc[("random_real", "10")].ars == pytest.approx(0.268941, abs=1e-6)
    assert np.isnan(out.loc[("d3hr", "1")].ars)  # no random real set at IPC 1
    assert ("full", "all") not in out.index
    w = augmentation_robust(_ars_rows(), w=0.8).set_index(["method", "ipc"]).loc[("d3hr", "10")]
    assert w.ars == pytest.approx(0.295250, abs=1e-6)
    assert w.ars == pytest.approx((math.exp(0.06) - math.exp(-1)) / (math.e - math.exp(-1)))


def test_augmentation_robust_table_and_label_robust_ignores_the_no_augmentation_runs(tmp_path):
    df = _ars_rows()
    df.to_csv(tmp_path / "ipc.csv", index=False)
    s = write_aug_robust([str(tmp_path / "ipc.csv")], str(tmp_path / "a.csv"), str(tmp_path / "a.md"), 0.5)
    md = (tmp_path / "a.md").read_text()
    assert "| d3hr | 10 | s | 62.0 ± 2.8 | 34.0 ± 5.7 | 10.0 ± 0.0 | -10.0 ± 0.0 | 0.269 ± 0.000 | 2 |" in md
    assert list(s.method) == ["d3hr", "random_real", "d3hr"]  # IPC 1, then IPC 10 in the methods' order
    lr = label_robust(df).set_index(["method", "ipc"])
    assert lr.loc[("d3hr", "10")].soft == pytest.approx(0.62)  # the augmented soft-label runs only
