"""Rerun triggers: a stage's code version is derived from the code it imports (d3hr/versions.py), not its comments,
docstrings or modules it does not import."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

from conftest import REPO
from d3hr.stages import STAGES
from d3hr.versions import closure, code_only

VERSIONS = ("import json; from d3hr.stages import STAGES, code_version; "
            "print(json.dumps({s: code_version(s) for s in STAGES}))")


def test_comments_and_docstrings_do_not_change_the_code_hash_but_code_does():
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    assert code_only(base) == code_only('"""Module doc."""\n\ndef f(x):\n    """Other doc."""\n    # note\n    return x + 1\n')
    assert code_only(base) == code_only('def f(x):\n    return x + 1\n')
    assert code_only(base) != code_only('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert code_only('def g():\n    """Only a docstring."""\n') == code_only("def g():\n    pass\n")


def test_the_closure_holds_every_module_a_stage_really_imports():
    """The AST closure of each stage's module contains every d3hr module that importing the stage's function loads
    (the imports inside functions are in the closure too, so it may hold more)."""
    for stage in ("invert", "evaluate", "decode", "encode", "select", "ablation-timestep", "quality"):
        mod = STAGES[stage].module
        p = subprocess.run([sys.executable, "-c", f"import sys, importlib; importlib.import_module('d3hr.{mod}'); "
                            "import json; print(json.dumps(sorted(m.split('.')[1] for m in sys.modules "
                            "if m.startswith('d3hr.'))))"], cwd=REPO, capture_output=True, text=True, check=True)
        loaded = set(json.loads(p.stdout)) | {"__init__"}
        assert loaded <= set(closure(mod)), (stage, loaded - set(closure(mod)))
    # the findings of issue #30: the model stages read device.model_dtype; evaluate's logic is no longer in cli.py
    for stage in ("encode", "invert", "decode", "ablation-timestep", "features"):
        assert "device" in closure(STAGES[stage].module), stage
    assert "cli" not in closure(STAGES["evaluate"].module)


def _versions(pkg_parent):
    p = subprocess.run([sys.executable, "-c", VERSIONS], cwd=pkg_parent, capture_output=True, text=True, check=True,
                       env={"PYTHONPATH": str(pkg_parent), "PATH": ""})
    return json.loads(p.stdout)


def test_editing_a_module_reruns_exactly_the_stages_that_import_it(tmp_path):
    """On a copy of the package: new code in a module changes the version of every stage whose closure holds it and of
    no other; a new comment or docstring changes none."""
    shutil.copytree(REPO / "d3hr", tmp_path / "d3hr", ignore=shutil.ignore_patterns("__pycache__", "schema.yaml"))
    before = _versions(tmp_path)
    assert len(set(before.values())) > 10  # stages of different modules have different versions
    for mod in ("device", "group_sampling", "figures"):
        path = tmp_path / "d3hr" / f"{mod}.py"
        src = path.read_text()
        path.write_text(src.replace('"""', '"""An edited docstring. ', 1) + "\n# a comment\n")
        assert _versions(tmp_path) == before, mod
        path.write_text(src + "\n\ndef _new_code():\n    return 1\n")
        after = _versions(tmp_path)
        changed = {s for s in STAGES if after[s] != before[s]}
        expected = {s for s in STAGES if mod in closure(STAGES[s].module)}
        assert changed == expected and changed, (mod, changed ^ expected)
        path.write_text(src)
    path = tmp_path / "d3hr" / "unrelated_helper.py"  # a module no stage imports
    path.write_text("X = 1\n")
    assert _versions(tmp_path) == before


def test_code_versions_are_kept_by_the_modules_bytes(tmp_path, monkeypatch):
    """A Snakefile parse asks for every stage's version: the first computes each module's facts and writes
    .snakemake/d3hr/code/<hash of its bytes>.json; the next (another process: the in-process cache emptied) reads them
    instead of parsing the modules, and gets the same versions."""
    import d3hr.versions as v

    monkeypatch.setattr(v, "_FACTS", {})
    plain = v.module_version("group_sampling")
    monkeypatch.setattr(v, "_FACTS", {})
    assert v.module_version("group_sampling", cache_dir=tmp_path) == plain
    files = list((tmp_path / "code").iterdir())
    assert len(files) == len(list((REPO / "d3hr").glob("*.py")))
    key = hashlib.sha256(b"group_sampling\0" + (REPO / "d3hr" / "group_sampling.py").read_bytes()).hexdigest()
    gs = tmp_path / "code" / f"{key}.json"
    facts = json.loads(gs.read_text())
    gs.write_text(json.dumps(facts | {"code": "sentinel"}))  # the file, not a parse, answers a new process
    monkeypatch.setattr(v, "_FACTS", {})
    assert v.module_version("group_sampling", cache_dir=tmp_path) != plain
