"""The world-model RL loop: collect real play with the agent, fit the world model, train the agent in the dream.

    worldsim loop --game crafter --iterations 5 --real-steps-per-iteration 20000 --out runs/loop
    worldsim loop --game crafter --iterations 8 ... --out runs/loop   # resumes, then adds iterations

Iteration i: (1) collect `real_steps_per_iteration` real steps with the current agent (random on
iteration 0) into RUN/data; (2) fit the world model `fit_steps_per_iteration` more steps with
Lightning, resuming RUN/world_model/checkpoints/last.ckpt; (3) export it to
RUN/world_model/release; (4) train the agent (continuing the previous one) for
`dream_steps_per_iteration` steps purely in that dream; (5) optionally evaluate it in the real
game. Each finished phase is recorded in RUN/loop.json, so running the same command again after
a crash or Ctrl-C picks up at the first unfinished phase: a cut collection plays only its
missing episodes, a cut fit restarts from the previous iteration's last.ckpt, a cut agent
training restarts from the previous agent.

Run directory:
    loop.json                   config and per-iteration progress and figures
    data/                       episode store of all real play (worldsim data info RUN/data)
    world_model/config.yaml     the Lightning config used (base config + this run's paths)
    world_model/checkpoints/    Lightning checkpoints; world_model/logs/: TensorBoard
    world_model/release/        the latest exported world model (WorldModel.from_checkpoint)
    agents/iter_NNN/            the agent after iteration NNN (an agent folder)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envs.collect import CollectConfig, episode_seed, open_store_for, play_episode
from worldsim.errors import WorldsimError

PHASES = ("collect", "fit", "export", "agent", "eval")
CONFIGS = Path(__file__).resolve().parent / "configs"


class LoopError(WorldsimError, RuntimeError):
    """A loop run that cannot go on (another game in the run directory, a failed fit)."""


@dataclass
class LoopConfig:
    """One world-model RL loop run. Fields match the `worldsim loop` options."""

    game: str = "crafter"  # a name known to envs.games.make_game
    iterations: int = 3  # iterations the run holds when done
    real_steps_per_iteration: int = 10_000  # real env steps collected per iteration
    out: str = "runs/loop"  # the run directory
    world_model_config: str = "crafter_tiles"  # a config in training/configs, or a YAML path
    init_from: str | None = None  # release the world model starts from (None: the config's own)
    fit_steps_per_iteration: int = 500  # world-model optimizer steps added per iteration
    fit_args: list[str] = field(default_factory=list)  # extra `worldsim fit` options
    algo: str = "ppo"  # the dream agent: ppo (batched) or sb3-ppo
    dream_steps_per_iteration: int = 50_000  # agent env steps in the dream per iteration
    num_envs: int = 16  # dream envs
    agent_hp: list[str] = field(default_factory=list)  # KEY=VALUE agent hyperparameters
    max_episode_steps: int | None = None  # cut real episodes at this length (default: the game's)
    eval_episodes: int = 0  # real-game evaluation episodes after each iteration (0: none)
    seed: int = 0  # run seed (iteration i collects with episode_seed(seed, i))
    device: str = "auto"  # where the dream and the agent run
    torch_threads: int | None = None  # CPU threads for torch (None: its default)
    verbose: bool = True  # progress lines, Lightning's progress bar


def config_path(name: str) -> Path:
    """A base Lightning config: a name in training/configs ("tiny") or a YAML path."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
        raise LoopError(f"no world-model config {name!r}: use a YAML path or one of {names}")
    return path


class Loop:
    """A loop run in one directory; `run()` does what is missing, recording it in loop.json."""

    def __init__(self, cfg: LoopConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.out)
        self.data = self.root / "data"
        self.world = self.root / "world_model"
        self.state_path = self.root / "loop.json"
        self.state = self._load_state()

    # ------------------------------------------------------------------ state
    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"format": "worldsim-loop", "config": asdict(self.cfg), "iterations": []}
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise LoopError(f"{self.state_path} is corrupt ({e}); start a new --out") from e
        if state["config"]["game"] != self.cfg.game:
            raise LoopError(
                f"{self.root} is a loop run of {state['config']['game']!r}, not {self.cfg.game!r}: "
                "pass another --out or the same --game"
            )
        state["config"] = asdict(self.cfg)  # later phases use the options given now
        return state

    def _save_state(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name("loop.json.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, default=str))
        os.replace(tmp, self.state_path)

    def _record(self, i: int) -> dict[str, Any]:
        while len(self.state["iterations"]) <= i:
            self.state["iterations"].append(
                {"iteration": len(self.state["iterations"]), "done": []}
            )
        return self.state["iterations"][i]

    def _say(self, text: str) -> None:
        if self.cfg.verbose:
            print(f"loop: {text}", flush=True)

    def agent_dir(self, i: int) -> Path:
        return self.root / "agents" / f"iter_{i:03d}"

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Run every missing phase of iterations 0..iterations-1; returns the state."""
        if self.cfg.torch_threads:
            import torch

            torch.set_num_threads(self.cfg.torch_threads)
        for i in range(self.cfg.iterations):
            record = self._record(i)
            for phase in PHASES:
                if phase in record["done"] or (phase == "eval" and not self.cfg.eval_episodes):
                    continue
                self._say(f"iteration {i}: {phase}")
                record.update(getattr(self, f"_{phase}")(i))
                record["done"].append(phase)
                self._save_state()
        self._save_state()
        return self.state

    def policy_spec(self, i: int) -> str:
        """Who plays the real game in iteration i: random first, then the latest agent."""
        return "random" if i == 0 else str(self.agent_dir(i - 1))

    def _collect(self, i: int) -> dict[str, Any]:
        from worldsim.data.lock import writer_lock

        with writer_lock(str(self.data), f"worldsim loop (iteration {i})"):
            return self._collect_locked(i)

    def _collect_locked(self, i: int) -> dict[str, Any]:
        from gymnasium.wrappers import TimeLimit

        from envs.games import make_game
        from envs.policies import make_policy

        policy_spec, seed = self.policy_spec(i), episode_seed(self.cfg.seed, i)
        cfg = CollectConfig(self.cfg.game, 0, str(self.data), policy_spec, seed=seed)
        store = open_store_for(cfg)
        store.remove_incomplete()  # an episode cut by a crash
        mine = [
            j
            for j in range(len(store))
            if store.info(j).get("policy") == policy_spec and store.info(j).get("run_seed") == seed
        ]
        steps, k = int(store.lengths[mine].sum()) if mine else 0, len(mine)
        limit = self.cfg.max_episode_steps
        env = make_game(self.cfg.game, **({"max_episode_steps": limit} if limit else {}))
        policy = make_policy(policy_spec, env.action_space)
        try:
            while steps < self.cfg.real_steps_per_iteration:
                # The last episode is cut so the iteration gets exactly its budget of steps.
                remaining = self.cfg.real_steps_per_iteration - steps
                episode_seed_k = episode_seed(seed, k)
                ep = play_episode(TimeLimit(env, remaining), policy, episode_seed_k)
                info = {
                    "policy": policy_spec,
                    "run_seed": seed,
                    "k": k,
                    "seed": episode_seed_k,
                    "return": float(ep["rewards"].sum()),
                    **ep["final_info"],
                }
                store.append(ep["frames"], ep["actions"], ep["rewards"], ep["terminated"],
                             ep["truncated"], info=info, labels=ep["labels"],
                             index=store.next_index())  # fmt: skip
                steps, k = steps + len(ep["rewards"]), k + 1
        finally:
            env.close()
        store.refresh()
        return {
            "policy": policy_spec,
            "collect_seed": seed,
            "real_steps": steps,
            "episodes": k,
            "real_steps_total": int(store.lengths.sum()),
            "episodes_total": len(store),
        }

    def _fit(self, i: int) -> dict[str, Any]:
        from training.cli import main as fit_main

        config = yaml.safe_load(config_path(self.cfg.world_model_config).read_text())
        steps = self.cfg.fit_steps_per_iteration
        trainer = config.setdefault("trainer", {})
        trainer["max_steps"] = steps * (i + 1)
        trainer["enable_progress_bar"] = self.cfg.verbose
        trainer["enable_model_summary"] = self.cfg.verbose
        if isinstance(trainer.get("val_check_interval"), int):
            trainer["val_check_interval"] = min(trainer["val_check_interval"], steps)
        trainer["logger"] = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(self.world), "name": "logs"},
        }
        init_args = config.setdefault("model", {}).setdefault("init_args", {})
        init_args["total_steps"] = steps * self.cfg.iterations  # one cosine over the whole loop
        if self.cfg.init_from is not None:
            init_args["init_from"] = self.cfg.init_from
        data = config.setdefault("data", {})
        if "class_path" in data:  # a data module given by class (the tile model's)
            data = data.setdefault("init_args", {})
        data["store"] = str(self.data)
        if config["data"].get("class_path", "").endswith("TileDataModule"):
            # Tokens must keep their meaning while the store grows: the codebook of the release
            # the run starts from, else the one iteration 0 built.
            vocabulary = self.cfg.init_from or (str(self.world / "release") if i else None)
            if vocabulary is not None:
                data["codebook_from"] = vocabulary
        config["checkpoint"] = {
            **config.get("checkpoint", {}),
            "dirpath": str(self.world / "checkpoints"),
            "every_n_train_steps": steps,  # so last.ckpt is written when this fit ends
            "save_top_k": 1,
        }
        self.world.mkdir(parents=True, exist_ok=True)
        (self.world / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        argv = ["--config", str(self.world / "config.yaml"), *self.cfg.fit_args]
        last = self.last_checkpoint()
        if last.is_file():
            argv += ["--ckpt_path", str(last)]
        if fit_main(argv) != 0:
            raise LoopError(f"fitting the world model failed (worldsim fit {' '.join(argv)})")
        import torch

        step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])
        return {"world_model_step": step}

    def last_checkpoint(self) -> Path:
        return self.world / "checkpoints" / "last.ckpt"

    def _export(self, i: int) -> dict[str, Any]:
        from training.export import export_checkpoint

        release = self.world / "release"
        export_checkpoint(str(self.last_checkpoint()), str(release), store=str(self.data))
        return {"release": str(release)}

    def agent_args(self, i: int) -> tuple[Any, Any]:
        """(trainer module, its checked arguments) of iteration i's dream agent."""
        from training import rl_ppo, rl_sb3
        from training.rl_common import with_overrides

        common = dict(
            total_timesteps=self.cfg.dream_steps_per_iteration,
            num_envs=self.cfg.num_envs,
            seed=episode_seed(self.cfg.seed, 10_000 + i) % 2**31,
            device=self.cfg.device,
        )
        module, cls = (
            (rl_ppo, rl_ppo.PPOArgs) if self.cfg.algo == "ppo" else (rl_sb3, rl_sb3.SB3Args)
        )
        args = with_overrides(cls(**common), self.cfg.agent_hp)
        module.check_args(args)
        return module, args

    def _agent(self, i: int) -> dict[str, Any]:
        out, init = self.agent_dir(i), (self.agent_dir(i - 1) if i > 0 else None)
        kwargs = dict(world="worldsim/WorldModel-v0", checkpoint=self.world / "release",
                      init_agent=init, verbose=self.cfg.verbose)  # fmt: skip
        module, args = self.agent_args(i)
        summary = module.run(args, out, **kwargs)
        return {
            "agent": str(out),
            "dream_steps": summary["global_step"],
            "dream_return": summary["mean_episodic_return"],
            "dream_reward_per_step": summary.get("reward_per_step"),
            "dream_env_steps_per_second": summary["env_steps_per_second"],
        }

    def _eval(self, i: int) -> dict[str, Any]:
        from training.rl_eval import evaluate_agent

        reports = evaluate_agent(
            str(self.agent_dir(i)),
            self.cfg.game,
            episodes=self.cfg.eval_episodes,
            seed=self.cfg.seed + 1,
            max_steps=self.cfg.max_episode_steps,
            baseline=False,
        )
        report = reports["agent"]
        keys = ("return_mean", "return_ci95", "length_mean", "crafter_score", "crafter_score_ci95")
        return {"eval": {k: report.get(k) for k in keys}}


def run_loop(cfg: LoopConfig) -> dict[str, Any]:
    """Run (or resume) the loop described by `cfg`; returns the state written to loop.json."""
    if cfg.iterations < 1 or cfg.real_steps_per_iteration < 1:
        raise LoopError("--iterations and --real-steps-per-iteration must be at least 1")
    if cfg.algo not in ("ppo", "sb3-ppo"):
        raise LoopError(f"unknown --algo {cfg.algo!r}: ppo or sb3-ppo")
    # Fail before collecting anything: agent settings it cannot run exactly, a missing config
    # or starting release.
    Loop(cfg).agent_args(0)
    config = yaml.safe_load(config_path(cfg.world_model_config).read_text())
    init_from = cfg.init_from or config.get("model", {}).get("init_args", {}).get("init_from")
    if init_from and not Path(init_from).is_dir():
        raise LoopError(
            f"the world model would start from the release {init_from}, which does not exist: "
            "pass --init-from worldsim/assets/crafter (the bundled Crafter model) or another "
            "release folder, or train that release first"
        )
    return Loop(cfg).run()


def loop_config(**kwargs: Any) -> LoopConfig:
    """A LoopConfig from keyword arguments, ignoring keys that are not fields (CLI namespaces)."""
    names = {f.name for f in dataclasses.fields(LoopConfig)}
    return LoopConfig(**{k: v for k, v in kwargs.items() if k in names and v is not None})
