"""`d3hr <stage> ...`: one subcommand per stage of d3hr.stages, its flags built from the stage function's signature.

A parameter `x` of the function is the flag `--x` (underscores as dashes): annotations give the type (int, float,
str, bool as `--x/--no-x`, list[...] as several values, Literal[...] as choices, dict as JSON), and a parameter
without a default is required. A parameter whose rule source is all of a rule's inputs ("in:*") is positional.
`--threads` (torch's CPU threads) and `--device` (auto | cpu | cuda, leased once here: d3hr.device.pick_device)
belong to the process: they are handled here once and passed to the stage if its signature names them.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import types
import typing

from . import D3HRError, __version__
from .stages import STAGES

DEVICES = ("auto", "cpu", "cuda")


def stage_function(name: str):
    """The function of stage `name` (importing its module)."""
    s = STAGES[name]
    return getattr(importlib.import_module(f"{__package__}.{s.module}"), s.function)


def _argument(hint) -> dict:
    """argparse keyword arguments for a parameter's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _argument(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin is list:
        return {"nargs": "+", **_argument(args[0] if args else str)}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint is dict:
        return {"type": json.loads}
    return {"type": hint if hint in (int, float, str) else str}


def add_stage(sub, name: str):
    """The subcommand of stage `name`, from its function's signature."""
    s, fn = STAGES[name], stage_function(name)
    p = sub.add_parser(name, help=s.help, description=(fn.__doc__ or s.help).strip())
    p.set_defaults(stage_fn=fn)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    hints = typing.get_type_hints(fn)
    for param in inspect.signature(fn).parameters.values():
        if param.name == "threads":
            continue
        src = s.sources.get(param.name)
        kw = {"choices": DEVICES, "type": str} if param.name == "device" else _argument(hints.get(param.name, str))
        kw["help"] = f"(workflow: {src})" if src else None
        if src == "in:*":
            p.add_argument(param.name, **(kw | {"nargs": "+"}))
            continue
        if param.default is inspect.Parameter.empty:
            kw["required"] = True
        else:
            kw["default"] = param.default
        p.add_argument(f"--{param.name.replace('_', '-')}", dest=param.name, **kw)
    return p


def build_parser(stages=None):
    """The parser of `d3hr`; with `stages`, only those subcommands have their flags (and their modules imported)."""
    p = argparse.ArgumentParser(prog="d3hr", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"d3hr {__version__}")
    sub = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, s in STAGES.items():
        if stages is None or name in stages:
            add_stage(sub, name)
        else:
            sub.add_parser(name, help=s.help)
    return p


def main(argv=None):
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    name = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser([name] if name in STAGES else []).parse_args(argv)
    t0 = time.time()
    launched = os.environ.get("D3HR_LAUNCHED_AT")  # set by bench/job_overhead.py: a job's cost before its stage runs
    if launched:
        print(f"[d3hr] {args.stage} starts {t0 - float(launched):.3f} s after its launch", file=sys.stderr)
    fn = args.stage_fn
    params = inspect.signature(fn).parameters
    kwargs = {k: getattr(args, k) for k in params if hasattr(args, k)}
    if args.threads and "torch" in sys.modules:  # the stage's module imported torch: the job's threads are torch's
        import torch

        torch.set_num_threads(args.threads)
    elif args.threads:  # a stage that imports torch later, if at all: torch reads these when it is imported
        os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if "threads" in params:
        kwargs["threads"] = args.threads or 1
    try:
        if "device" in params:
            from .device import pick_device

            kwargs["device"] = pick_device(args.device)
        fn(**kwargs)
    except D3HRError as e:
        print(f"d3hr {args.stage}: error: {e}", file=sys.stderr)
        return 2
    print(f"[d3hr] {args.stage} done in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
