"""`worldsim model info|sampler`: the presets' parameters and FLOPs; a release with other
sampler defaults.

    worldsim model info
    worldsim model sampler --release worldsim/assets/crafter --set fixed_temperature=1 --out releases/crafter-hud1
"""

from __future__ import annotations

import argparse
import dataclasses

from worldsim.cli.argtypes import positive_int
from worldsim.model.config import PRESETS, DiffusionSampler, preset
from worldsim.model.tile_config import TileSampler

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model", help="inspect model presets (parameters, FLOPs per frame)"
    )
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True
    info = sub.add_parser("info", help="print parameters and FLOPs per frame for each preset")
    info.add_argument("--preset", choices=sorted(PRESETS), action="append",
                      help="preset(s) to show (default: all)")  # fmt: skip
    info.add_argument(
        "--height", type=positive_int, default=None, help="frame height (default: the preset's)"
    )
    info.add_argument(
        "--width", type=positive_int, default=None, help="frame width (default: the preset's)"
    )
    info.add_argument(
        "--context",
        type=positive_int,
        default=None,
        help="frames in the window (default: the preset's)",
    )
    info.set_defaults(func=run_info)
    sampler = sub.add_parser(
        "sampler",
        help="copy a release with other sampler defaults (temperatures, commit rounds)",
        description="Copy a release folder with other sampler defaults; the weights stay as they "
        "are. Any field of the model's sampler config: tile models (TileSampler) "
        f"{_fields(TileSampler)}; diffusion models (DiffusionSampler) "
        f"{_fields(DiffusionSampler)}.",
    )
    sampler.add_argument("--release", required=True, help="the release folder to copy")
    sampler.add_argument("--set", action="append", required=True, metavar="KEY=VALUE",
                         help="a sampler default to change (repeatable)")  # fmt: skip
    sampler.add_argument("--out", required=True, help="the new release folder")
    sampler.set_defaults(func=run_sampler)


def _fields(cls: type) -> str:
    """The field names of a sampler config class in their order, for the help text."""
    return ", ".join(f.name for f in dataclasses.fields(cls))


def run_sampler(args: argparse.Namespace) -> int:
    from worldsim.checkpoint import with_sampler_defaults
    from worldsim.errors import WorldsimError

    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise WorldsimError(f"--set {item!r}: expected KEY=VALUE, e.g. fixed_temperature=1")
        settings[key.strip()] = value.strip()
    out = with_sampler_defaults(args.release, args.out, settings)
    print(f"wrote {out} ({', '.join(f'{k}={v}' for k, v in settings.items())})")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from worldsim.model.flops import model_cost

    overrides = {
        k: getattr(args, k) for k in ("height", "width", "context") if getattr(args, k) is not None
    }
    names = args.preset or list(PRESETS)
    header = (
        f"{'preset':<6} {'frame':>9} {'patch':>5} {'dim':>5} {'depth':>5} {'ctx':>4} {'tokens':>6} "
        f"{'params':>9} {'GF/eval':>8} {'GF/step':>8} {'GF/train':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        try:
            config = preset(name, **overrides)
        except ValueError as e:
            print(f"{name:<6} {e}")
            continue
        cost = model_cost(config)
        print(
            f"{name:<6} {config.height:>4}x{config.width:<4} {config.patch_size:>5} {config.dim:>5} "
            f"{config.depth:>5} {config.context:>4} {cost.tokens_per_frame:>6} "
            f"{cost.params / 1e6:>8.2f}M {cost.eval_flops / 1e9:>8.2f} {cost.step_flops / 1e9:>8.2f} "
            f"{cost.train_flops / 1e9:>9.2f}"
        )
    print(
        "\nGF/eval: GFLOPs of one denoiser evaluation of one new frame after a full cached window;"
        "\nGF/step: per generated frame at the default sampler's 2 steps (plus the pass that caches it);"
        "\nGF/train: forward+backward per frame of a training clip. Counted by torch's FlopCounterMode."
    )
    return 0
