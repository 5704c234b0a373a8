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


def code_version(stage: str) -> str:
    """A short hash of the code (not the comments or docstrings) of the modules that make `stage`'s outputs."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    for mod in STAGE_MODULES[stage]:
        h.update(_code_only((Path(__file__).parent / f"{mod}.py").read_text()).encode())
    return f"{__version__}+{h.hexdigest()[:12]}"
