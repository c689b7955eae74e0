"""The `quadpipe` command: one verb per pipeline stage, each a thin shell over a module.

User errors (QuadpipeError) become one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quadpipe.errors import ConfigError, QuadpipeError

Handler = Callable[[argparse.Namespace], Any]
VERBS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler]] = {}


def verb(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command: `configure` adds its arguments, the decorated function runs it."""

    def register(fn: Handler) -> Handler:
        VERBS[name] = (configure, fn)
        return fn

    return register


def load_config(path: str | None) -> dict[str, Any]:
    """Read a YAML config (the workflow's config.yaml works); {} when no file is given."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        # a job's settings are JSON (the workflow writes them): read as JSON first, since YAML
        # 1.1 takes JSON's 1e-05 for a string (it wants 1.0e-05)
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    try:
        if data is None:
            data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections")
    return data


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num", type=int, required=True, help="stable trajectories to keep")
    p.add_argument("--seed", type=int, required=True, help="base random seed")
    p.add_argument("--shard", type=int, default=0, help="shard index (own random stream)")
    p.add_argument("--out", required=True, help="HDF5 file to write")
    p.add_argument("--threads", type=int, help="simulation threads (default: config, 0 = all)")
    p.add_argument("--config", help="YAML with sections expert, stability, generate, randomize")


@verb("generate", _generate_args)
def _generate(args: argparse.Namespace) -> None:
    import dataclasses

    from quadpipe.config import GenerateConfig, StabilityConfig, expert_config, from_mapping
    from quadpipe.data.generate import generate_shard
    from quadpipe.sim.randomize import RandomizeConfig

    cfg = load_config(args.config)
    gen = from_mapping(GenerateConfig, cfg.get("generate"), "generate")
    if args.threads is not None:
        gen = dataclasses.replace(gen, threads=args.threads)
    summary = generate_shard(args.out, args.num, args.seed, args.shard,
                             expert_config(cfg),
                             from_mapping(StabilityConfig, cfg.get("stability"), "stability"), gen,
                             rand=RandomizeConfig.from_mapping(cfg.get("randomize")))
    print(f"{args.out}: {summary['num_trajectories']} trajectories, acceptance "
          f"{summary['acceptance_rate']:.1%} of {summary['total_attempts']} attempts")


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="shard or dataset files")


@verb("validate", _validate_args)
def _validate(args: argparse.Namespace) -> None:
    from quadpipe.data.dataset import validate

    for f in args.files:
        attrs = validate(f)
        print(f"{f}: ok, {attrs['num_trajectories']} trajectories")


def _register_optional_verbs() -> None:
    """Verbs of the later stages live in their own modules; import them to register."""
    import importlib

    for module in ("quadpipe.cli.data", "quadpipe.cli.learn", "quadpipe.cli.evaluation",
                   "quadpipe.cli.export"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    _register_optional_verbs()
    parser = argparse.ArgumentParser(prog="quadpipe", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", required=True)
    for name, (configure, fn) in VERBS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__
                           else None)
        configure(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except QuadpipeError as exc:
        print(f"quadpipe {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"quadpipe {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0
