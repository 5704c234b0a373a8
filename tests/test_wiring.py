"""Static checks of the glue between the config, the rules and the package, where silent bugs hide: a rule param
that never reaches its shell command (the workflow validates and passes a value that the job never receives), and a
schema key that nothing reads."""

from __future__ import annotations

import re

import yaml

from conftest import REPO
from d3hr.config import SCHEMA, _schema_leaves

# params that exist to rerun a job when something changes, not to reach the command
RERUN_TRIGGERS = {"code"}


def _rules():
    """(file, rule name, body) of every rule in rules/*.smk."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^(?:rule|use rule \w+ as) (\w+)", text, re.M)]
        for k, (start, name) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
            yield smk.name, name, text[start:end]


def _params(body: str) -> list[str]:
    m = re.search(r"^    params:\n((?:        .*\n|\s*\n)+)", body, re.M)
    return re.findall(r"^        (\w+)=", m.group(1), re.M) if m else []


def test_every_rule_param_reaches_the_shell_command():
    checked, missing = 0, []
    for fname, rule, body in _rules():
        if body.startswith("use rule"):
            base = re.match(r"use rule (\w+)", body).group(1)
            body_base = next(b for _, r, b in _rules() if r == base)
            shell = body_base[body_base.index("shell:"):]
        elif "shell:" not in body:
            continue
        else:
            shell = body[body.index("shell:"):]
        for p in _params(body):
            checked += 1
            if p not in RERUN_TRIGGERS and f"{{params.{p}" not in shell:
                missing.append(f"{fname}: rule {rule}: params.{p}")
    assert checked > 50
    assert not missing, "params that no shell command uses:\n" + "\n".join(missing)


def test_every_flags_table_is_used_by_a_rule():
    """Each stage's flags table (`NAME_FLAGS = flags(...)` in rules/*.smk) reaches a rule's params."""
    text = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    tables = re.findall(r"^([A-Z_]+_FLAGS) = flags\(", text, re.M)
    assert len(tables) > 10
    unused = [t for t in tables if not re.search(rf"^        args={t},$", text, re.M)]
    assert not unused, f"flags tables that no rule passes: {unused}"


def test_every_schema_key_is_read_by_the_workflow_or_the_package():
    """Each leaf key's name appears as a string, an attribute or a keyword in the rules, the Snakefile or the package
    (keys of the train section reach d3hr/train.py's functions as keyword arguments, one JSON object per model)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    code = "\n".join(p.read_text() for p in [*(REPO / "rules").glob("*.smk"), REPO / "Snakefile",
                                              *(REPO / "d3hr").glob("*.py")])
    unread = []
    for key, _ in _schema_leaves(schema, "", schema["definitions"]):
        leaf = key.split(".")[-1]
        signature = rf"^\s*def \w+\([^)]*\b{leaf}\b"
        if not re.search(rf"""["']{leaf}["']|\.{leaf}\b|\b{leaf}=|{signature}""", code, re.M):
            unread.append(key)
    assert not unread, f"schema keys that nothing reads: {unread}"


def test_the_jobs_that_load_no_model_import_no_torch():
    """select, fit_gaussian and random_real import only these modules (and the CLI): none may pull in torch, which
    costs seconds per job (baselines imports ddim only where dit_noise needs its grid)."""
    import subprocess
    import sys

    code = ("import sys, d3hr.cli, d3hr.group_sampling, d3hr.baselines, d3hr.gaussian, d3hr.images, d3hr.h5io; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_rule_reads_in_at_most_20_lines():
    """A rule is read in one screen: its header and directives fit in 20 non-blank lines (flags tables, input
    functions and report helpers live above the rule or in rules/common.smk)."""
    rules, long = list(_rules()), {}
    for fname, rule, body in rules:
        header, *rest = body.splitlines()
        lines = [header]
        for line in rest:  # the rule ends at the first line that is not indented (a table or function above the next)
            if line.strip() and not line.startswith(" "):
                break
            lines += [line] if line.strip() else []
        if len(lines) > 20:
            long[f"{fname}: {rule}"] = len(lines)
    assert len(rules) > 30 and not long, f"rules over 20 lines: {long}"


def test_figure_rules_are_local():
    """A figure takes seconds and reads many files: every fig_* rule is in the Snakefile's localrules, so that it runs
    where Snakemake runs and never as a cluster job."""
    m = re.search(r"^localrules:\n((?:    \w+,\n)+)", (REPO / "Snakefile").read_text(), re.M)
    local = set(re.findall(r"(\w+),", m.group(1)))
    figures = {rule for _, rule, _ in _rules() if rule.startswith("fig_")}
    assert len(figures) > 6 and figures <= local, f"figure rules not in localrules: {sorted(figures - local)}"


def test_kmeans_vae_jobs_import_no_torch(tmp_path):
    """`d3hr baseline-kmeans --timestep -1` (kmeans_vae: centroids decoded by the VAE alone) needs no noise schedule,
    so it loads no model and imports no torch."""
    import subprocess
    import sys

    import numpy as np

    from d3hr.h5io import write_h5

    lat = tmp_path / "cat.h5"
    write_h5(lat, {"latents": np.random.default_rng(0).normal(size=(6, 4, 2, 2)).astype(np.float32)}, {"cls": "cat"})
    code = ("import sys; from d3hr.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, 'torch' in sys.modules)")
    args = ["baseline-kmeans", "--latents", str(lat), "--ipc", "2", "--seed", "0", "--timestep", "-1", "--label", "-1",
            "--num-steps", "50", "--guidance", "1", "--out", str(tmp_path / "k.h5")]
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[-2:] == ["0", "False"], out.stdout + out.stderr
