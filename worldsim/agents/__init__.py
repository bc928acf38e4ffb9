"""RL agents as a format, the way releases are: the agent folder, each algorithm's loader, policies.

    from worldsim.agents import load_agent_policy
    policy = load_agent_policy("agents/crafter", env.action_space)  # policy(obs) -> action

`format` holds the folder (agent.json + safetensors) and the loader registry; `actor_critic`
(algo "ppo") and `sb3` (algo "sb3-ppo") each register their own loader when imported, which
importing this package does. Training them is `training`'s business (`training.rl_ppo`,
`training.rl_sb3`).
"""

from worldsim.agents import sb3  # noqa: F401  (registers "sb3-ppo")
from worldsim.agents.actor_critic import (  # registers "ppo"
    ActorCritic,
    NetworkConfig,
    check_spaces,
    load_actor_critic,
    save_agent,
)
from worldsim.agents.format import (
    AGENT_FORMAT,
    AGENT_FORMAT_VERSION,
    AgentError,
    algos,
    load_logits_fn,
    load_weights,
    read_agent_config,
    register_loader,
    save_weights,
    write_agent_config,
)
from worldsim.agents.policy import AgentPolicy, load_agent_policy

__all__ = [
    "AGENT_FORMAT",
    "AGENT_FORMAT_VERSION",
    "ActorCritic",
    "AgentError",
    "AgentPolicy",
    "NetworkConfig",
    "algos",
    "check_spaces",
    "load_actor_critic",
    "load_agent_policy",
    "load_logits_fn",
    "load_weights",
    "read_agent_config",
    "register_loader",
    "save_agent",
    "save_weights",
    "write_agent_config",
]
