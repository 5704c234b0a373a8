"""Ablation variants (rules/variants.smk) run D3HR's own rules with their config keys changed, from the first stage
whose keys they change: a variant's command differs from D3HR's by its settings and its files, and by nothing else."""

from __future__ import annotations

import re

from conftest import tiny_config, write_config, copy_workflow, make_dataset, make_pipeline, make_teacher, snakemake
from test_schema_walk import parse_dry_run

VARIANTS = {"above": {"decode_start": "above"}, "m3": {"m": 3}, "code": {"skew_mode": "code", "skew": 5.0},
            "cfg1": {"invert_guidance": 1.0}}


def _flags(cmd: str) -> dict:
    """{flag: value} of a `python -m d3hr` command, file flags and the log left out."""
    cmd = cmd.split(" > ")[0]
    out = {}
    for flag, value in re.findall(r"(--[\w-]+)((?: (?!--)\S+)*)", cmd):
        if not re.search(r"results/|inputs/|data/", value):
            out[flag] = value.strip()
    return out


def test_each_variant_runs_the_main_rules_from_its_first_changed_stage(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    make_dataset(wd / "inputs" / "data", classes=("cat", "dog"))
    make_pipeline(wd / "inputs" / "pipeline", ["cat", "dog"])
    make_teacher(wd / "inputs" / "teacher.pt", ["cat", "dog"])
    cfg = tiny_config("inputs/data", "inputs/pipeline", "inputs/teacher.pt")
    cfg["ablation"]["variants"] = VARIANTS
    write_config(wd, cfg)
    p = snakemake(wd, "-n", "-p", "results/tiny/tables/ablation.md")
    jobs = parse_dry_run(p.stdout + p.stderr)

    def of(rule, **wc):
        return [j for j in jobs if j["rule"] == rule
                and wc.items() <= dict(kv.strip().split("=", 1) for kv in j["wildcards"].split(",") if kv).items()]

    # the rules each variant runs, and where its inputs come from
    variant = lambda j: re.search(r"variant=(\w+)", j["wildcards"]).group(1)
    assert {variant(j) for j in of("invert_variant")} == {"cfg1"}
    assert {variant(j) for j in of("select_variant")} == {"cfg1", "m3", "code"}
    assert len(of("decode_variant")) == 4 * 2  # every variant, two classes
    (m3,) = of("select_variant", variant="m3", cls="cat")
    assert m3["input"] == ["results/tiny/gaussian/cat.h5"]
    (cfg1,) = of("select_variant", variant="cfg1", cls="cat")
    assert cfg1["input"] == ["results/tiny/variants/cfg1/gaussian/cat.h5"]
    (above,) = of("decode_variant", variant="above", cls="cat")
    assert "results/tiny/selected/ipc2/cat.h5" in above["input"]
    # against D3HR's own jobs: the same flags but the variant's settings
    (d3hr_decode,) = of("decode", method="d3hr", ipc="2", cls="cat")
    diff = {k: v for k, v in _flags(above["cmd"]).items() if _flags(d3hr_decode["cmd"]).get(k) != v}
    assert diff == {"--start": "above"}, diff
    (d3hr_select,) = of("select", ipc="2", cls="cat")
    (code,) = of("select_variant", variant="code", cls="cat")
    for variant, want in ((m3, {"--m": "3"}), (code, {"--skew-mode": "code", "--l-skew": "5.0"})):
        diff = {k: v for k, v in _flags(variant["cmd"]).items() if _flags(d3hr_select["cmd"]).get(k) != v}
        assert diff == want, diff
    (inv,) = of("invert_variant", variant="cfg1", cls="cat")
    assert _flags(inv["cmd"])["--guidance"] == "1.0" and _flags(inv["cmd"])["--timesteps"] == "500"
    (dec,) = of("decode_variant", variant="cfg1", cls="cat")
    assert _flags(dec["cmd"]) == _flags(d3hr_decode["cmd"])  # decoding as D3HR's, from the variant's own selection
    assert "results/tiny/variants/cfg1/selected/ipc2/cat.h5" in dec["input"]
