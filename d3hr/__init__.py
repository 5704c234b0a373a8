"""D3HR: Taming Diffusion for Dataset Distillation with High Representativeness (Zhao et al., ICML 2025).

Each stage is a small module with plain functions over tensors and arrays:

    data      image folders, the embedded animal-mnist export
    encode    VAE latents per class                        (docs/method.md §1)
    ddim      DDIM inversion / sampling with CFG           (docs/method.md §2)
    invert    inverted latents per class                   (docs/method.md §2)
    gaussian  per-dimension Gaussian + normality stats     (docs/method.md §3)
    group_sampling  group sampling                               (docs/method.md §4)
    decode    DDIM from the selected latents, VAE decode   (docs/method.md §5)

Every stage of the CLI and the workflow is declared once, in `stages` (the function that runs it, and where a workflow
run takes each of its parameters from); `versions` derives each stage's code version from the modules it imports.
"""

__version__ = "0.1.0"


class D3HRError(Exception):
    """An error a user can act on: the message names the file or value and the problem."""
