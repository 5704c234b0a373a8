"""Rerun triggers: a stage's code hash follows its code, not its comments or docstrings."""

from d3hr import _code_only


def test_comments_and_docstrings_do_not_change_the_code_hash_but_code_does():
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    assert _code_only(base) == _code_only('"""Module doc."""\n\ndef f(x):\n    """Other doc."""\n    # note\n    return x + 1\n')
    assert _code_only(base) == _code_only('def f(x):\n    return x + 1\n')
    assert _code_only(base) != _code_only('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert _code_only('def g():\n    """Only a docstring."""\n') == _code_only("def g():\n    pass\n")


def test_code_versions_are_kept_by_the_modules_bytes(tmp_path, monkeypatch):
    """A Snakefile parse asks for every stage's version: the first computes it and writes .snakemake/d3hr/code/<hash>,
    the next (another process: the in-process cache emptied) reads that file instead of parsing the modules; the
    cached value is the uncached one, and other bytes are another key."""
    import d3hr

    monkeypatch.setattr(d3hr, "_VERSIONS", {})
    plain = d3hr.code_version("select")
    monkeypatch.setattr(d3hr, "_VERSIONS", {})
    assert d3hr.code_version("select", cache_dir=tmp_path) == plain
    (entry,) = (tmp_path / "code").iterdir()
    assert entry.read_text().strip() == plain
    entry.write_text("sentinel\n")  # the file, not a parse, answers a new process
    monkeypatch.setattr(d3hr, "_VERSIONS", {})
    assert d3hr.code_version("select", cache_dir=tmp_path) == "sentinel"
    monkeypatch.setattr(d3hr, "__version__", "9.9.9")  # other bytes hashed: a new key, computed afresh
    assert d3hr.code_version("select", cache_dir=tmp_path).startswith("9.9.9+")
    assert len(list((tmp_path / "code").iterdir())) == 2
