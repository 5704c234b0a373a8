"""The sanity table (d3hr/sanity.py, tables/sanity.md): each check passes on good numbers and fails on bad ones, and
the run's closing message names every failed check."""

from __future__ import annotations

import json

import pandas as pd

from d3hr.sanity import failed_checks, sanity_checks, write_sanity


def _accuracy(tmp_path, rows):
    recs = [{"method": m, "ipc": i, "student": "s", "seed": k, "hard_label": False, "top1": v / 100}
            for m, i, vals in rows for k, v in enumerate(vals)]
    recs.append({"method": "full", "ipc": "all", "student": "s", "seed": 0, "hard_label": True, "top1": 0.0})  # ignored
    pd.DataFrame(recs).to_csv(tmp_path / "accuracy.csv", index=False)
    return tmp_path / "accuracy.csv"


def _teacher_check(tmp_path, values):
    pd.DataFrame([(m, i, 10, 2, v) for m, i, v in values],
                 columns=["method", "ipc", "images", "classes", "teacher_top1"]).to_csv(tmp_path / "tc.csv", index=False)
    return tmp_path / "tc.csv"


def test_good_numbers_pass_every_check(tmp_path):
    acc = _accuracy(tmp_path, [("random_real", "1", [40, 42, 44]), ("random_real", "10", [70, 71, 72]),
                               ("full", "all", [90, 91, 92]), ("d3hr", "10", [60, 61, 62])])
    tc = _teacher_check(tmp_path, [("d3hr", "10", 0.93), ("random_real", "10", 0.5)])  # real sets are not checked
    t = sanity_checks(acc, tc, 0.95, 0.9, 0.8)
    assert list(t.check) == ["teacher", "full", "random real", "recognition"] and t.ok.all()
    assert t.value.round(1).tolist() == [95.0, 20.0, 25.0, 93.0]  # full - best real 91 - 71; step 29 - 2 x std 2


def test_a_weak_teacher_a_low_full_a_flat_real_curve_and_an_off_class_set_fail(tmp_path):
    acc = _accuracy(tmp_path, [("random_real", "10", [70, 72, 74]), ("random_real", "50", [71, 73, 75]),
                               ("full", "all", [68, 68, 68])])
    tc = _teacher_check(tmp_path, [("d3hr", "10", 0.7), ("dit_noise", "10", 0.85)])
    t = sanity_checks(acc, tc, 0.797, 0.9, 0.8)
    assert t.set_index("subject").ok.to_dict() == {
        "teacher top-1 on val (%)": False, "s: full - best random real (IPC 50)": False,
        "s: random real IPC 10 -> 50 (step - 2 std)": False, "teacher on d3hr IPC 10 (%)": False,
        "teacher on dit_noise IPC 10 (%)": True}
    q = tmp_path / "quality.json"
    q.write_text(json.dumps({"teacher_val_top1": 0.797}))
    write_sanity(acc, tc, "unused.pt", 0.9, 0.8, tmp_path / "s.csv", tmp_path / "s.md", quality_json=str(q))
    lines = failed_checks(tmp_path / "s.csv")
    assert len(lines) == 4 and lines[0] == "teacher: teacher top-1 on val (%) = 79.7 (threshold 90.0)"
    assert (tmp_path / "s.md").read_text().count("**FAILED**") == 4
    assert failed_checks(tmp_path / "missing.csv") == []


def test_an_imported_teacher_without_a_val_score_is_not_measured(tmp_path):
    acc = _accuracy(tmp_path, [("d3hr", "10", [60, 61])])
    t = sanity_checks(acc, _teacher_check(tmp_path, []), None, 0.9, 0.8)
    assert t.ok.isna().all()
    assert t.subject.tolist() == ["teacher top-1 on val (%)", "s: full - best random real (not evaluated)"]
