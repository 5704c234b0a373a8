"""The one list of distilled-set methods (docs/method.md, "Baselines"): name -> (label, colour), in the order tables
and figures show them.

A new method goes here (its label and colour; the config check accepts the names listed here), and the rule that
writes its images goes in `rules/baselines.smk` (`results/{dataset}/images/{method}/ipc{ipc}/{cls}/`)."""

METHODS = {  # the order of the paper's tables: the real-image and generative baselines, then D3HR, then the bound
    "random_real": ("Random real", "#55A868"),
    "kmeans_vae": ("K-means, VAE decode only", "#937860"),
    "kmeans": ("K-means + DiT (D4M)", "#8172B3"),
    "dit_noise": ("DiT from noise", "#4C72B0"),
    "d3hr_nogroup": ("D3HR, one random draw", "#DD8452"),
    "d3hr": ("D3HR", "#C44E52"),
    "full": ("Full training set", "#4D4D4D"),
}
METHOD_ORDER = list(METHODS)
METHOD_LABELS = {m: v[0] for m, v in METHODS.items()}
METHOD_COLORS = {m: v[1] for m, v in METHODS.items()}


def ordered(methods) -> list[str]:
    """`methods` in the canonical order, unknown names last (sorted)."""
    methods = set(methods)
    return [m for m in METHOD_ORDER if m in methods] + sorted(methods - set(METHOD_ORDER))
