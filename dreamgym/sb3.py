"""stable-baselines3 in the dream (the public path `dreamgym.sb3`; the code lives elsewhere).

- `DreamVecEnv`: SB3's `VecEnv` over one batched dream core (`dreamgym.envs.sb3_vec`).
- `train_agent(SB3Config)` (`dreamgym sb3`) and its callbacks (`dreamgym.agents.sb3`).
- `ExploitationAlarmCallback`: the dream score beside the predicted real score while an agent
  trains, best agents by each saved (`dreamgym.agents.sb3_alarm`).
- `save_agent`, `load_sb3_policy`, `SB3Policy`: agents on disk as policies
  (`dreamgym.policies.sb3_agent`).
"""

from __future__ import annotations

from dreamgym.agents.alarm import AlarmConfig, ExploitationWarning
from dreamgym.agents.sb3 import (
    PPO_BATCH_SIZE,
    PPO_ROLLOUT_STEPS,
    CheckpointCallback,
    ProgressCallback,
    SB3Config,
    default_algo_kwargs,
    train_agent,
)
from dreamgym.agents.sb3_alarm import ExploitationAlarmCallback
from dreamgym.envs.sb3_vec import DreamVecEnv
from dreamgym.policies.sb3_agent import (
    AGENT_FORMAT,
    AGENT_FORMAT_VERSION,
    ALGOS,
    SB3Policy,
    agent_paths,
    load_sb3_policy,
    save_agent,
    world_sha256,
)

__all__ = [
    "AGENT_FORMAT",
    "AGENT_FORMAT_VERSION",
    "ALGOS",
    "AlarmConfig",
    "PPO_BATCH_SIZE",
    "PPO_ROLLOUT_STEPS",
    "CheckpointCallback",
    "DreamVecEnv",
    "ExploitationAlarmCallback",
    "ExploitationWarning",
    "ProgressCallback",
    "SB3Config",
    "SB3Policy",
    "agent_paths",
    "default_algo_kwargs",
    "load_sb3_policy",
    "save_agent",
    "train_agent",
    "world_sha256",
]
