"""Code versions of the stages, derived from the code itself (torch-free).

Snakemake does not see edits to this package, so every rule puts its stage's `code_version` into its params: a
stage's version is a hash of the code (not the comments or docstrings) of its entry module and of every module of
this package that it imports, closed over those imports (`from .x import`, `from . import x`, `import d3hr.x`, at any
depth of the module, inside functions too). Editing any module that a stage imports reruns that stage's jobs; editing
a module that it does not import reruns nothing. There is no hand-written list to fall behind the code.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

PACKAGE = Path(__file__).parent
NAME = PACKAGE.name


def code_only(source: str) -> str:
    """The module's syntax tree without comments and docstrings: editing documentation reruns nothing."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def package_imports(source: str, modules: set[str]) -> set[str]:
    """The modules of this package that `source` imports (`__init__` for names taken from the package itself)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == NAME):
                mod = (node.module or "") if node.level == 1 else node.module.partition(".")[2]
                if mod:
                    out.add(mod.split(".")[0])
                else:  # from . import a, b: modules, or names defined in __init__
                    out |= {a.name if a.name in modules else "__init__" for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                head, _, rest = a.name.partition(".")
                if head == NAME:
                    out.add(rest.split(".")[0] if rest else "__init__")
    return {m for m in out if m in modules}


def _module_facts(cache_dir) -> dict[str, dict]:
    """{module: {"code": hash of its code, "imports": [...]}} of every module, kept in `cache_dir` by the hash of the
    module's bytes (parsing is the costly part: a Snakefile parse asks for every stage)."""
    files = {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}
    facts = {}
    for mod, path in files.items():
        raw = path.read_bytes()
        key = hashlib.sha256(mod.encode() + b"\0" + raw).hexdigest()
        cache = Path(cache_dir) / "code" / f"{key}.json" if cache_dir is not None else None
        if key in _FACTS:
            facts[mod] = _FACTS[key]
            continue
        if cache is not None and cache.is_file():
            try:
                facts[mod] = _FACTS[key] = json.loads(cache.read_text())
                continue
            except ValueError:
                pass
        src = raw.decode()
        facts[mod] = _FACTS[key] = {"code": hashlib.sha256(code_only(src).encode()).hexdigest(),
                                    "imports": sorted(package_imports(src, set(files)))}
        if cache is not None:
            try:  # atomically: parallel parses may write it too; a cache that cannot be written is only slower
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f".{key}.tmp-{os.getpid()}")
                tmp.write_text(json.dumps(facts[mod]))
                os.replace(tmp, cache)
            except OSError:
                pass
    return facts


_FACTS: dict[str, dict] = {}


def closure(module: str, cache_dir=None) -> list[str]:
    """`module` and every module of the package that it imports, directly or not (sorted)."""
    facts = _module_facts(cache_dir)
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += facts[m]["imports"]
    return sorted(seen)


def module_version(module: str, cache_dir=None) -> str:
    """A short hash of the code of `module` and of its import closure."""
    from . import __version__

    facts = _module_facts(cache_dir)
    h = hashlib.sha256()
    for m in closure(module, cache_dir):
        h.update(f"{m}:{facts[m]['code']}\n".encode())
    return f"{__version__}+{h.hexdigest()[:12]}"

