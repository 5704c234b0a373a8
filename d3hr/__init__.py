"""D3HR: Taming Diffusion for Dataset Distillation with High Representativeness (Zhao et al., ICML 2025).

Each stage is a small module with plain functions over tensors and arrays:

    data      image folders, the embedded animal-mnist export
    encode    VAE latents per class                        (docs/method.md §1)
    ddim      DDIM inversion / sampling with CFG           (docs/method.md §2)
    invert    inverted latents per class                   (docs/method.md §2)
    gaussian  per-dimension Gaussian + normality stats     (docs/method.md §3)
    group_sampling  group sampling                               (docs/method.md §4)
    decode    DDIM from the selected latents, VAE decode   (docs/method.md §5)
"""

__version__ = "0.1.0"


class D3HRError(Exception):
    """An error a user can act on: the message names the file or value and the problem."""


# Modules whose code determines each stage's outputs. Snakemake does not see changes to this package, so each
# rule puts `code_version(stage)` into its params: editing one of these modules reruns that stage's jobs.
STAGE_MODULES = {
    "export": ["data", "seeds"],
    "train_ldm": ["train", "models", "data"],
    "train_teacher": ["train", "augment", "nets", "archs", "data"],
    "quality": ["train", "ddim", "images", "models", "nets", "archs", "data"],
    "encode": ["encode", "data", "models", "seeds"],
    "invert": ["invert", "ddim", "models"],
    "fit_gaussian": ["gaussian"],
    "select": ["group_sampling", "seeds"],
    "decode": ["decode", "images", "ddim", "models"],
    "baselines": ["baselines", "ddim", "images", "data", "seeds"],
    "prepare_val": ["valset", "data"],
    "evaluate": ["evaluate", "valset", "augment", "archs", "nets", "data"],  # archs: the authors' rate per student
    "ablation": ["ablation", "group_sampling", "decode", "images", "ddim", "models", "nets", "archs", "data", "seeds"],
    "figures": ["figures", "tables", "data", "nets", "archs", "methods"],
    "variants": ["variants", "group_sampling", "decode", "images", "ddim", "gaussian", "models", "seeds"],
    "ablation_table": ["variants", "methods"],
    "metrics": ["metrics", "data", "nets", "archs", "models", "seeds"],
    "metric_tables": ["tables", "figures", "methods"],
    "tables": ["tables", "methods"],
}


def _code_only(source: str) -> str:
    """The module's syntax tree without comments and docstrings: editing documentation reruns nothing."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


_VERSIONS: dict[str, str] = {}  # this process's code versions, by the hash of the modules' bytes


def code_version(stage: str, cache_dir=None) -> str:
    """A short hash of the code (not the comments or docstrings) of the modules that make `stage`'s outputs.

    Parsing the modules is the costly part (about 25 ms each, and a Snakefile parse asks for every stage), so the
    result is kept by the hash of the modules' bytes: in this process, and with `cache_dir` in a file per hash there
    (the Snakefile passes `.snakemake/d3hr`: every Snakemake start, dry run and cluster job reuses it)."""
    import hashlib
    import os
    from pathlib import Path

    sources = [(Path(__file__).parent / f"{mod}.py").read_bytes() for mod in STAGE_MODULES[stage]]
    key = hashlib.sha256(b"\0".join([__version__.encode(), *sources])).hexdigest()
    if key in _VERSIONS:
        return _VERSIONS[key]
    cache = Path(cache_dir) / "code" / key if cache_dir is not None else None
    if cache is not None and cache.is_file():
        _VERSIONS[key] = cache.read_text().strip()
        return _VERSIONS[key]
    h = hashlib.sha256()
    for src in sources:
        h.update(_code_only(src.decode()).encode())
    _VERSIONS[key] = f"{__version__}+{h.hexdigest()[:12]}"
    if cache is not None:
        try:  # atomically: parallel parses may write it too; a cache that cannot be written is only slower
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{key}.tmp-{os.getpid()}")
            tmp.write_text(_VERSIONS[key] + "\n")
            os.replace(tmp, cache)
        except OSError:
            pass
    return _VERSIONS[key]
