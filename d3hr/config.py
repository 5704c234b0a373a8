"""Configuration checks beyond the JSON schema (config/schema.yaml), shared by the Snakefile and the tests."""

from __future__ import annotations

from pathlib import Path

from . import D3HRError
from .data import EMBEDDED, check_class_name, list_classes

# config/schema.yaml, through the link d3hr/schema.yaml: a wheel carries the file, a checkout reads the original
SCHEMA = Path(__file__).resolve().parent / "schema.yaml"


# evaluate.protocol presets: the values a named protocol fixes (docs/method.md §6). `authors`: the D3HR authors'
# validation code (validation/argument.py, validate.py) for ImageNet: budget in epochs, batch size by IPC, AdamW at
# their rate per student and weight decay 0.01, CutMix at temperature 20, validation resized to 256 and centre-cropped
# to 224, ResNet students as torchvision builds them. Their schedule, loss, weight-decay exclusion and count of
# evaluations (after the epochs of index > epochs - 10: 9) apply to every protocol.
PROTOCOLS = {
    "authors": {"steps": 0, "full_steps": 0, "batch_size": 0, "lr": 0, "weight_decay": 0.01, "schedule": "authors", "mix": "cutmix",
                "temperature": 0, "val_crop": 0.875, "builder": "torchvision"},
}


def apply_protocol(config: dict) -> dict:
    """Fill the keys of a named `evaluate.protocol`; a key set to another value is an error (say `custom`)."""
    ev = config.get("evaluate") or {}
    name = ev.get("protocol", "custom")
    if name == "custom":
        return config
    if name not in PROTOCOLS:
        raise D3HRError(f"evaluate.protocol={name!r} is not one of {['custom', *PROTOCOLS]}")
    for key, value in PROTOCOLS[name].items():
        if key in ev and ev[key] != value:
            raise D3HRError(f"evaluate.{key}={ev[key]!r} differs from protocol {name!r} ({value!r}): remove the key, "
                            "or set evaluate.protocol: custom")
        ev[key] = value
    return config


def validate_schema(config: dict, schema=SCHEMA) -> dict:
    """Validate against the JSON schema, filling defaults (as snakemake.utils.validate does); a named
    evaluate.protocol fills its keys first."""
    import yaml
    from jsonschema import Draft202012Validator, validators

    def set_defaults(validator, properties, instance, schema):
        for prop, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(prop, sub["default"])
        yield from Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)

    apply_protocol(config)
    cls = validators.extend(Draft202012Validator, {"properties": set_defaults})
    errors = sorted(cls(yaml.safe_load(Path(schema).read_text())).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(top level)"
        raise D3HRError(f"invalid config value at {where}: {e.message}")
    return config


def check_semantics(config: dict) -> dict:
    """Cross-field checks: timesteps on the DDIM grid, selected timestep kept, training settings present."""
    inv = config["invert"]
    # ddim.timestep_grid(1000, S), written out here so that parsing the Snakefile imports no torch
    grid = set(range(0, 1000, 1000 // inv["num_inference_steps"])) if 1000 % inv["num_inference_steps"] == 0 else None
    if grid is None:
        raise D3HRError(f"invert.num_inference_steps={inv['num_inference_steps']} must divide 1000")
    off = [t for t in inv["keep_timesteps"] if t not in grid]
    if off:
        step = 1000 // inv["num_inference_steps"]
        raise D3HRError(f"invert.keep_timesteps {off} are not on the {inv['num_inference_steps']}-step DDIM grid "
                        f"(multiples of {step} from 0 to {1000 - step})")
    if config["select"]["timestep"] not in inv["keep_timesteps"]:
        raise D3HRError(f"select.timestep={config['select']['timestep']} is not in invert.keep_timesteps")
    fig = config.get("figures") or {}
    abl = fig.get("timestep_ablation") or {}
    off = [t for t in (abl.get("timesteps") or []) if t not in inv["keep_timesteps"]]
    if off:
        raise D3HRError(f"figures.timestep_ablation.timesteps {off} are not in invert.keep_timesteps")
    if fig.get("enabled", True) and fig.get("grid_ipc") is not None and fig["grid_ipc"] not in config["select"]["ipc"]:
        raise D3HRError(f"figures.grid_ipc={fig['grid_ipc']} is not in select.ipc {config['select']['ipc']}")
    if config.get("evaluate"):
        from .archs import check_arch_name, student_lr  # no torch or timm while the Snakefile is parsed
        from .methods import METHODS

        unknown = [m for m in config["evaluate"]["methods"] if m not in METHODS]
        if unknown:
            raise D3HRError(f"evaluate.methods: unknown {unknown}; the methods (d3hr/methods.py) are {list(METHODS)}")

        for student in config["evaluate"]["students"]:
            check_arch_name(student)
            student_lr(student, config["evaluate"]["lr"])  # lr 0: the authors' rate, which must exist
    for name, ds in config["datasets"].items():
        for key in ("model", "teacher"):
            if ds[key] == "train" and key == "model" and not {"vae", "dit"} <= set(config.get("train", {})):
                raise D3HRError(f"datasets.{name}.model is 'train' but the config has no train.vae / train.dit")
            if ds[key] == "train" and key == "teacher" and "teacher" not in config.get("train", {}):
                raise D3HRError(f"datasets.{name}.teacher is 'train' but the config has no train.teacher")
        if ds["model"] == "train" and "quality" not in config.get("train", {}):
            raise D3HRError(f"datasets.{name}.model is 'train' but the config has no train.quality")
    _check_ablation(config)
    return config


# An ablation variant's settings (config `ablation.variants`) and the config keys they replace: a variant runs the
# main rules (invert, fit_gaussian, select, decode) with those keys changed, from the first stage that reads one.
VARIANT_KEYS = {"invert_guidance": "invert.guidance_scale", "m": "select.m", "skew_mode": "select.skew_mode",
                "skew": "select.weights.skew", "cov_rank": "select.cov_rank", "rescale": "select.rescale",
                "criterion": "select.criterion", "decode_start": "decode.start",
                "decode_guidance": "decode.guidance_scale"}


def variant_overrides(variant: dict) -> dict:
    """{config key: value} of a variant's settings."""
    return {VARIANT_KEYS[k]: v for k, v in variant.items()}


def ablation_ipcs(config: dict) -> list[int]:
    """ablation.ipc as a list (the config takes one IPC or a list)."""
    ipc = config["ablation"]["ipc"]
    return list(ipc) if isinstance(ipc, (list, tuple)) else [ipc]


def structure_stored(config: dict) -> bool:
    """Whether the inversion stores the covariance factor and the reference latents at the selection timestep: when
    a job of the run reads them (a structured or MMD selection, in select or in an ablation variant that runs, or the
    diagnostics' round trip), so that a run without them does not re-invert when select.timestep changes."""
    sel, abl = config["select"], config.get("ablation") or {}
    runs = abl.get("enabled") and (config.get("evaluate") or {}).get("methods")  # variants need students
    variants = list((abl.get("variants") or {}).values()) if runs else []
    diag = config.get("diagnostics") or {}
    uses = [sel.get("cov_rank", 0) > 0, sel.get("criterion") == "mmd",
            bool(diag.get("enabled")) and diag.get("roundtrip_images", 0) > 0]
    uses += [v.get("cov_rank", 0) > 0 or v.get("criterion") == "mmd" for v in variants]
    return any(uses)


def _check_ablation(config: dict):
    abl = config.get("ablation") or {}
    if abl.get("enabled") and abl.get("variants"):
        off = [i for i in ablation_ipcs(config) if i not in config["select"]["ipc"]]
        if off:
            raise D3HRError(f"ablation.ipc={abl['ipc']} is not in select.ipc {config['select']['ipc']}")
        needs_ref = [n for n, v in abl["variants"].items() if v.get("criterion") == "mmd"]
        if needs_ref and not config["invert"]["reference_images"]:
            raise D3HRError(f"ablation variants {needs_ref} select by MMD, which needs invert.reference_images > 0")
        rank = config["invert"]["cov_rank"]
        high = [n for n, v in abl["variants"].items() if v.get("cov_rank", 0) > rank]
        if high:
            raise D3HRError(f"ablation variants {high} sample with a cov_rank above invert.cov_rank {rank}")
    sel = config["select"]
    if sel["cov_rank"] > config["invert"]["cov_rank"]:
        raise D3HRError(f"select.cov_rank {sel['cov_rank']} exceeds invert.cov_rank {config['invert']['cov_rank']}")
    if sel["criterion"] == "mmd" and not config["invert"]["reference_images"]:
        raise D3HRError("select.criterion mmd needs invert.reference_images > 0")


def grid_ipc(config: dict) -> int:
    """IPC of the sample grids: figures.grid_ipc, else the smallest IPC >= 5, else the largest."""
    ipcs = sorted(config["select"]["ipc"])
    g = (config.get("figures") or {}).get("grid_ipc")
    return g if g is not None else next((i for i in ipcs if i >= 5), ipcs[-1])


def dataset_root(name: str, ds: dict) -> str:
    return f"data/{name}" if ds.get("embedded") else ds["root"]


def dataset_classes(name: str, ds: dict) -> list[str]:
    """The class list: explicit, or all classes (of the embedded dataset, or the folders of {root}/train)."""
    if ds.get("embedded"):
        known = EMBEDDED[ds["embedded"]]
        if ds["classes"] == "all":
            return list(known)
        unknown = [c for c in ds["classes"] if c not in known]
        if unknown:
            raise D3HRError(f"datasets.{name}.classes: {unknown} are not classes of {ds['embedded']} ({', '.join(known)})")
        return [check_class_name(c) for c in ds["classes"]]
    train = Path(ds["root"]) / "train"
    on_disk = list_classes(train)
    if ds["classes"] == "all":
        return [_check_not_empty(train, check_class_name(c)) for c in on_disk]
    missing = [c for c in ds["classes"] if c not in on_disk]
    for c in ds["classes"]:
        check_class_name(c)
    if missing:
        raise D3HRError(f"datasets.{name}.classes: {missing} not found under {train} (class folders there: "
                        f"{', '.join(on_disk[:10])}{' ...' if len(on_disk) > 10 else ''})")
    return [_check_not_empty(train, c) for c in ds["classes"]]


def _check_not_empty(train: Path, cls: str) -> str:
    """Fail early on a class folder without images (stops at the first image: cheap for large classes)."""
    import os

    from .data import IMAGE_EXTENSIONS

    with os.scandir(train / cls) as it:
        for e in it:
            if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                return cls
    raise D3HRError(f"{train / cls}: empty class folder (no image files); add its images or remove the class")


def model_labels(name: str, ds: dict, classes: list[str]) -> dict[str, int]:
    """The model's label index of every class, known before any job runs (so it can be a per-class param), read once
    per run: a workflow-trained model uses the config's class order; a given pipeline uses its classes.json, else the
    sorted class folders of {root}/train (ImageNet's folder order is its label order)."""
    import json

    if ds["model"] == "train":
        return {c: k for k, c in enumerate(classes)}
    names_file = Path(ds["model"]) / "classes.json"
    if names_file.is_file():
        names = {n: k for k, n in enumerate(json.loads(names_file.read_text()))}
        missing = [c for c in classes if c not in names]
        if missing:
            raise D3HRError(f"{names_file}: classes {missing[:5]} are not among the model's classes")
        return {c: names[c] for c in classes}
    on_disk = {c: k for k, c in enumerate(list_classes(Path(dataset_root(name, ds)) / "train"))}
    return {c: on_disk[c] for c in classes}


def _schema_leaves(node: dict, path: str, defs: dict):
    """(dotted key, schema) of every leaf of the schema; `<name>` stands for a user-chosen key."""
    if "$ref" in node:
        node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    props = node.get("properties")
    extra = node.get("additionalProperties")
    if props:
        for key, sub in props.items():
            yield from _schema_leaves(sub, f"{path}.{key}" if path else key, defs)
    elif isinstance(extra, dict) and extra.get("type") == "object":
        yield from _schema_leaves(extra, f"{path}.<name>", defs)
    else:
        yield path, node
    if props and isinstance(extra, dict):
        yield from _schema_leaves(extra, f"{path}.<name>", defs)


def schema_markdown(schema=SCHEMA) -> str:
    """config/README.md: every key of the schema with its type, allowed values, default and description."""
    import json

    import yaml

    s = yaml.safe_load(Path(schema).read_text())

    def fmt(v):
        return json.dumps(v) if not isinstance(v, str) else v

    rows = []
    for key, node in _schema_leaves(s, "", s.get("definitions", {})):
        typ = " or ".join(_type_name(o) for o in node["oneOf"]) if "oneOf" in node else _type_name(node)
        allowed = []
        if "enum" in node:
            allowed.append(" / ".join(fmt(v) for v in node["enum"]))
        for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if k in node:
                allowed.append(f"{op} {node[k]}")
        allowed += [" / ".join(fmt(v) for v in o["enum"]) for o in node.get("oneOf", []) if "enum" in o]
        default = fmt(node["default"]) if "default" in node else "required" if _required(s, key) else ""
        desc = node.get("description", "").replace("|", "\\|")
        rows.append(f"| `{key}` | {typ} | {', '.join(allowed)} | {default} | {desc} |")
    return ("# Configuration keys\n\n"
            "Generated from `config/schema.yaml` by `make config-readme` (tests/test_config.py checks that this file\n"
            "and the schema agree). Every value is validated against the schema when the workflow starts; cross-field\n"
            "rules (timesteps on the DDIM grid, the selected timestep among the kept ones, classes present on disk)\n"
            "are checked by `d3hr.config.check_semantics`. `config.yaml` is the embedded default, `imagenet.yaml`\n"
            "the paper's ImageNet-1K setting. `<name>` is a key you choose (a dataset, an ablation variant).\n\n"
            "| key | type | allowed | default | description |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def _type_name(node: dict) -> str:
    typ = node.get("type", "integer" if "$ref" in node else "object")
    if typ == "array":
        return f"list of {_type_name(node.get('items', {}))}"
    return " or ".join(typ) if isinstance(typ, list) else typ


def _required(schema: dict, dotted: str) -> bool:
    node, parts = schema, dotted.split(".")
    for i, part in enumerate(parts):
        if part == "<name>":
            node = node.get("additionalProperties", {})
            continue
        if part not in node.get("required", []) and i == len(parts) - 1:
            return False
        node = node.get("properties", {}).get(part, {})
    return True
