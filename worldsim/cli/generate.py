"""`worldsim generate`: the generative tools (worldsim/generate/) from the command line, one
subcommand per tool, each writing an mp4 (recorded | generated with --side-by-side) and,
with --npz, the frames as arrays.

Examples:
    worldsim generate extend --store data/crafter-heldout-explore --episode 0 --start 0 \\
        --length 8 --frames 32 --out extend.mp4 --side-by-side
    worldsim generate animate --image pic.png --strength 0.6 --frames 32 --out animate.mp4
    worldsim generate edit --store data/crafter-heldout-explore --episode 0 --length 24 --at 8 \\
        --new-actions left.txt --out edit.mp4 --side-by-side
    worldsim generate bridge --store data/crafter-heldout-explore --episode 0 --start 10 \\
        --frames 8 --out bridge.mp4 --side-by-side
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.cli.argtypes import non_negative_int, positive_int
from worldsim.errors import WorldsimError

__all__ = ["register"]

TOOLS = {
    "extend": "extend a recorded clip forward (or --backward) by new frames",
    "animate": "image-to-world: bring a picture onto the game at --strength, then play it",
    "edit": "re-generate a clip from frame --at on under other actions, or at --strength",
    "bridge": "the frames between a start and an end frame, both held clean",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, help="a release folder (default: bundled Crafter)")
    p.add_argument("--out", type=Path, required=True, help="the mp4 to write")
    p.add_argument("--npz", type=Path, help="also write the frames (and which were generated)")
    p.add_argument("--side-by-side", action="store_true", help="recorded | generated")
    p.add_argument("--scale", type=positive_int, default=4, help="video pixels per frame pixel")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling")
    p.add_argument("--steps", type=positive_int, help="sampler steps / commit rounds per frame")
    p.add_argument("--device", default="cpu", help="cpu or cuda")


def _clip_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=str, help="an episode store to take the clip from")
    p.add_argument("--episode", type=non_negative_int, default=0, help="episode index")
    p.add_argument("--start", type=non_negative_int, default=0, help="first frame of the clip")
    p.add_argument("--length", type=positive_int, default=8, help="frames in the clip")
    p.add_argument("--video", type=Path, help="or a video file (mp4) as the clip")
    p.add_argument(
        "--clip-actions",
        type=Path,
        help="the actions between the video's frames "
        "(.npy, .json or one per line; default: no-ops)",
    )
    p.add_argument("--resize", action="store_true", help="scale the video to the model's size")


def _future(p: argparse.ArgumentParser, flag: str = "--actions") -> None:
    p.add_argument(
        flag,
        type=Path,
        help="the new frames' actions (.npy, .json, or one per "
        "line: an integer or an action name); default: --policy",
    )
    p.add_argument(
        "--frames",
        type=positive_int,
        help="new frames (default: 16 with --policy; "
        "with an action file, the file must hold this many)",
    )
    p.add_argument(
        "--policy",
        default="noop",
        help="noop, random or an agent folder: who acts in the new frames",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="generative tools: extend, animate, edit, bridge"
    )
    sub = parser.add_subparsers(dest="tool", metavar="TOOL")
    sub.required = True
    for name, text in TOOLS.items():
        p = sub.add_parser(name, help=text, description=text)
        _common(p)
        if name in ("extend", "edit"):
            _clip_source(p)
        if name == "extend":
            _future(p)
            p.add_argument("--backward", action="store_true", help="the frames before the clip")
        elif name == "animate":
            p.add_argument("--image", type=Path, required=True, help="the picture (PNG, JPEG)")
            p.add_argument("--strength", type=float, default=0.6, help="0: keep .. 1: re-draw")
            p.add_argument(
                "--order",
                choices=("worst", "random"),
                default="worst",
                help="tile models: which tiles are re-drawn first",
            )
            _future(p)
        elif name == "edit":
            p.add_argument("--at", type=positive_int, required=True, help="frames before it kept")
            p.add_argument("--strength", type=float, help="SDEdit the rest at this strength")
            _future(p, "--new-actions")
        else:
            p.add_argument("--start-image", type=Path, help="the start frame (a picture)")
            p.add_argument("--end-image", type=Path, help="the end frame (a picture)")
            p.add_argument("--store", type=str, help="or: start and end from an episode")
            p.add_argument("--episode", type=non_negative_int, default=0, help="episode index")
            p.add_argument(
                "--start",
                type=non_negative_int,
                default=0,
                help="start frame; the end is --frames + 1 later",
            )
            p.add_argument("--frames", type=positive_int, default=8, help="frames between")
            p.add_argument(
                "--method",
                choices=("plan", "sample"),
                default="plan",
                help="plan: a walk with the end in the world memory (tile models); "
                "sample: the best of random rollouts (any model)",
            )
            p.add_argument(
                "--candidates",
                type=positive_int,
                default=4,
                help="walks or rollouts to choose the best of",
            )
            p.add_argument(
                "--offset",
                type=int,
                nargs=2,
                metavar=("DROW", "DCOL"),
                help="the end view's position in tiles from the start's",
            )
        p.set_defaults(func=run)


def _load(args: argparse.Namespace) -> Any:
    from envs.world_model_registry import bundled_checkpoint
    from worldsim.world_model import WorldModel

    return WorldModel.from_checkpoint(args.checkpoint or bundled_checkpoint(), args.device)


def _clip(args: argparse.Namespace, wm: Any) -> tuple[np.ndarray, Any, Any, Any]:
    """(frames, actions, recorded frames after the clip (or None), the episode's labels)."""
    from worldsim.generate import read_actions, read_video
    from worldsim.spaces import noop_action, stack_actions, tree_index

    shape = tuple(wm.observation_space.shape)
    if args.video is not None:
        frames = read_video(args.video, shape, resize=args.resize)
        if args.clip_actions is not None:
            acts = read_actions(
                args.clip_actions, wm.action_space, len(frames) - 1, wm.release.action_names
            )
        else:
            acts = stack_actions(
                wm.action_space, [noop_action(wm.action_space)] * (len(frames) - 1)
            )
        return frames, acts, None, {}
    if args.store is None:
        raise WorldsimError("pass the clip: --store STORE [--episode i --start t] or --video FILE")
    from worldsim.data import EpisodeStore

    ep = EpisodeStore.open(args.store).episode(args.episode)
    T = len(ep.frames)
    if args.start + args.length > T:
        raise WorldsimError(f"episode {args.episode} has {T} frames: --start + --length must fit")
    stop = args.start + args.length
    frames = ep.frames[args.start : stop]
    acts = tree_index(ep.actions, slice(args.start, stop - 1))
    return frames, acts, (ep.frames, ep.actions, args.start), ep.labels


def _future_actions(args: argparse.Namespace, wm: Any, path: Path | None) -> tuple[Any, Any]:
    """(actions from the file or None, a policy or None)."""
    from worldsim.generate import read_actions
    from worldsim.spaces import noop_action

    if path is not None:
        n = args.frames if args.frames is not None else _count(path, wm)
        return read_actions(path, wm.action_space, n, wm.release.action_names), None
    if args.policy == "noop":
        noop = noop_action(wm.action_space)
        return None, lambda frame: noop
    if args.policy == "random":
        wm.action_space.seed(args.seed)
        return None, lambda frame: wm.action_space.sample()
    from worldsim.agents import load_agent_policy

    return None, load_agent_policy(args.policy, wm.action_space)


def _n(actions: Any) -> int:
    from worldsim.generate.clip import n_actions

    return n_actions(actions)


def _count(path: Path, wm: Any) -> int:
    """How many actions a file holds (its length sets the new frames; --frames is for policies)."""
    from worldsim.generate.clip import n_actions
    from worldsim.spaces import stack_actions

    if path.suffix == ".npy" and path.is_file():
        return n_actions(stack_actions(wm.action_space, np.load(path, allow_pickle=False)))
    if path.suffix == ".json" and path.is_file():
        import json

        return n_actions(stack_actions(wm.action_space, json.loads(path.read_text())))
    if path.is_file():
        return len([ln for ln in path.read_text().splitlines() if ln.strip()])
    return 0


def _rollout_actions(policy: Any, wm: Any, n: int) -> Any:
    """n actions of the noop or random policy (they ignore the frame) for tools that take an
    action list."""
    from worldsim.spaces import stack_actions

    return stack_actions(wm.action_space, [policy(None) for _ in range(n)])


def _frames(args: argparse.Namespace) -> int:
    """The new frames a policy plays (--frames, default 16)."""
    return 16 if args.frames is None else args.frames


def _is_agent(args: argparse.Namespace) -> bool:
    return args.policy not in ("noop", "random")


def run(args: argparse.Namespace) -> int:
    import torch

    from worldsim.generate import write_mp4

    torch.set_num_threads(1)
    wm = _load(args)
    g = torch.Generator().manual_seed(args.seed)
    common = {"steps": args.steps, "generator": g}
    if args.tool == "extend":
        frames, acts, rec, _ = _clip(args, wm)
        future, policy = _future_actions(args, wm, args.actions)
        if args.backward and future is None:
            future = _rollout_actions(policy, wm, _frames(args))
            policy = None
        n = None if future is not None else _frames(args)
        ref = None
        if rec is not None and not args.backward:  # the recording goes on after the clip
            all_frames, _, t0 = rec
            ref = all_frames[t0 : t0 + len(frames) + (n or _n(future))]
        gen = wm.extend(
            frames,
            acts,
            future,
            policy=policy,
            n=n,
            backward=args.backward,
            reference=ref,
            **common,
        )
    elif args.tool == "animate":
        from worldsim.generate import read_picture

        image = read_picture(args.image, tuple(wm.observation_space.shape))
        future, policy = _future_actions(args, wm, args.actions)
        if future is None and _is_agent(args):  # an agent plays the frames it sees
            first = wm.animate(image, args.strength, None, order=args.order, **common)
            gen = wm.extend(first.frames, [], policy=policy, n=_frames(args), **common)
            gen.tool, gen.reference, gen.info = "animate", image[None], first.info
            gen.generated[:] = True
        else:
            if future is None:
                future = _rollout_actions(policy, wm, _frames(args))
            gen = wm.animate(image, args.strength, future, order=args.order, **common)
    elif args.tool == "edit":
        frames, acts, _, _ = _clip(args, wm)
        if args.strength is not None:
            gen = wm.edit(frames, acts, args.at, strength=args.strength, **common)
        else:
            future, policy = _future_actions(args, wm, args.new_actions)
            if future is None and _is_agent(args):
                raise WorldsimError("edit takes --new-actions FILE or --policy noop/random")
            if future is None:
                future = _rollout_actions(policy, wm, len(frames) - args.at)
            gen = wm.edit(frames, acts, args.at, new_actions=future, **common)
    else:
        gen = _bridge(args, wm, common)
    write_mp4(args.out, gen, fps=wm.release.fps, scale=args.scale, recorded=args.side_by_side)
    if args.npz is not None:
        np.savez_compressed(
            args.npz, frames=gen.frames, generated=gen.generated, rewards=gen.rewards
        )
    made = int(gen.generated.sum())
    print(
        f"{args.tool}: {len(gen)} frames ({made} generated, {len(gen) - made} held) -> {args.out}"
    )
    for k, v in gen.info.items():
        print(f"  {k}: {v}")
    return 0


def _bridge(args: argparse.Namespace, wm: Any, common: dict[str, Any]) -> Any:
    from worldsim.generate import read_picture

    shape = tuple(wm.observation_space.shape)
    offset = tuple(args.offset) if args.offset else None
    ref = None
    if args.store is not None:
        from worldsim.data import EpisodeStore

        ep = EpisodeStore.open(args.store).episode(args.episode)
        t0, t1 = args.start, args.start + _frames(args) + 1
        if t1 >= len(ep.frames):
            raise WorldsimError(
                f"episode {args.episode} has {len(ep.frames)} frames: "
                f"--start + --frames + 1 must be inside it"
            )
        start, end, ref = ep.frames[t0], ep.frames[t1], ep.frames[t0 : t1 + 1]
        if offset is None and "view_pos" in ep.labels:
            offset = tuple(int(v) for v in ep.labels["view_pos"][t1] - ep.labels["view_pos"][t0])
    elif args.start_image is not None and args.end_image is not None:
        start, end = read_picture(args.start_image, shape), read_picture(args.end_image, shape)
    else:
        raise WorldsimError("pass --start-image and --end-image, or --store [--episode --start]")
    gen = wm.bridge(
        start,
        end,
        _frames(args),
        method=args.method,
        offset=offset,
        candidates=args.candidates,
        **common,
    )
    gen.reference = ref
    return gen
