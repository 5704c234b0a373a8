"""The conda deployment (`snakemake --sdm conda`): every rule's environment file exists, pip accepts its pip section
(checked with a real `pip install --dry-run` against this machine's package index; conda's channels cannot be reached
from here), and its pins are the versions of constraints.txt, the one list the virtual environment also uses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line)
            assert m, f"not a plain pin: {line!r}"
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _pip_section(env_file):
    deps = yaml.safe_load(Path(env_file).read_text())["dependencies"]
    return [x for d in deps if isinstance(d, dict) for x in d.get("pip", [])]


def test_every_conda_directive_names_an_existing_env_file():
    found = 0
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for m in re.finditer(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            found += 1
            assert (smk.parent / m.group(1)).resolve().is_file(), f"{smk.name}: conda env {m.group(1)} not found"
    assert found >= 20  # one per rule


def test_env_pins_are_the_constraints_pins():
    constraints = _pins((REPO / "constraints.txt").read_text().splitlines())
    for env in sorted((REPO / "envs").glob("*.yaml")):
        pins = _pins(_pip_section(env))
        assert pins, f"{env.name}: no pip pins"
        for name, version in pins.items():
            assert constraints.get(name) == version, f"{env.name}: {name}=={version}, constraints.txt: {constraints.get(name)}"
    # the post-deploy script installs the embedded dataset at the constrained version
    post = (REPO / "envs" / "d3hr.post-deploy.sh").read_text()
    assert f"animal-mnist=={constraints['animal-mnist']}" in post and "--no-deps" in post


@pytest.mark.slow
def test_pip_accepts_the_env_files_pip_section(tmp_path):
    for env in sorted((REPO / "envs").glob("*.yaml")):
        req = tmp_path / f"{env.stem}.txt"
        req.write_text("\n".join(_pip_section(env)) + "\n")
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                            "--disable-pip-version-check", "-r", str(req)], capture_output=True, text=True)
        if p.returncode and re.search(r"(Network is unreachable|Failed to establish|ConnectionError|Max retries)", p.stderr):
            pytest.skip(f"no package index reachable: {p.stderr.strip().splitlines()[-1]}")
        assert p.returncode == 0, f"{env.name}: pip rejects its pip section:\n{p.stderr[-3000:]}"


def test_the_wheel_carries_the_schema(tmp_path):
    """`d3hr.config.SCHEMA` must work outside a checkout: the wheel holds config/schema.yaml as d3hr/schema.yaml."""
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("d3hr-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("d3hr/schema.yaml") == (REPO / "config" / "schema.yaml").read_bytes()
