"""Rerun triggers: a stage's code hash follows its code, not its comments or docstrings."""

from d3hr import _code_only


def test_comments_and_docstrings_do_not_change_the_code_hash_but_code_does():
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    assert _code_only(base) == _code_only('"""Module doc."""\n\ndef f(x):\n    """Other doc."""\n    # note\n    return x + 1\n')
    assert _code_only(base) == _code_only('def f(x):\n    return x + 1\n')
    assert _code_only(base) != _code_only('def f(x):\n    """Doc."""\n    return x + 2\n')
    assert _code_only('def g():\n    """Only a docstring."""\n') == _code_only("def g():\n    pass\n")
