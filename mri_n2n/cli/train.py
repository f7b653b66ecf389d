"""``mri-n2n train`` (and ``python -m mri_n2n.train``): train a Noise2Noise or Noise2Clean network.

Flags mirror :class:`~mri_n2n.config.Config`, one per field. Precedence: the config's
defaults < the preset < ``--config`` YAML < the flags typed; ``--resume --out D`` continues
the run in ``D`` as it was configured (flags typed with it may extend its budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..checkpoint import CheckpointError
from ..config import Config, ConfigError, field_choices, load_yaml, resolve_config
from ..training import TrainingError, resume, train
from .common import fail, parse_and_run, register

__all__ = ["build_parser", "add_arguments", "typed_values", "run", "main"]

_TYPES = typing.get_type_hints(Config)
_YAML_ONLY = ("noise_options",)


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--resume`` and one flag per :class:`Config` field, each with its help."""
    p.add_argument("--config", metavar="YAML", help="YAML file of config values (flags typed override it)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from checkpoints/last.pt, as it was configured",
    )
    defaults = Config()
    for f in dataclasses.fields(Config):
        if f.name in _YAML_ONLY:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_ = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if default is not None:
            help_ += f" (default: {default})"
        tp = _base_type(_TYPES[f.name])
        # default=None: only the flags typed reach the config (see typed_values)
        if tp is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            conv = {int: int, float: float}.get(tp, str)
            choices = field_choices(f.name)
            p.add_argument(flag, dest=f.name, type=conv, default=None, choices=choices, help=help_)


def typed_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the user typed as flags."""
    names = {f.name for f in dataclasses.fields(Config)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``train`` parser: standalone, or registered as ``mri-n2n train``."""
    p = register(subparsers, "train", "train a restoration network", __doc__.split("\n")[0].split(": ", 1)[1])
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say: 0 on success, 1 on a run error, 2 on a bad setting."""
    typed = typed_values(args)
    try:
        if args.resume:
            if args.config:
                return fail("--resume continues the run as it was configured: drop --config", 2)
            resume(typed.get("out", Config().out), typed)
            return 0
        values = load_yaml(args.config) if args.config else {}
        cfg = Config.from_dict({**values, **typed}, where="flags")
        resolve_config(cfg)
    except ConfigError as e:
        return fail(e, 2)
    except (ValueError, OSError, TrainingError, CheckpointError, ImportError) as e:
        return fail(e, 1)
    try:
        train(cfg)
    except (ValueError, OSError, TrainingError, CheckpointError, ImportError) as e:
        return fail(e, 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mri_n2n.train``: returns 0 on success, 1 on a run error, 2 on bad arguments."""
    return parse_and_run(build_parser(), argv)

