"""Train PPO entirely inside a learned world, then drive the real env with it.

The paper's main experiment (Ha & Schmidhuber 2018, §4) with an SB3 agent as the controller:
16 dreams step as one torch batch (`DreamVecEnv`), PPO learns from [z, h], and the same agent
then acts in the real env, whose frames V encodes and whose history M tracks
(`WorldModelObservation`), so the agent sees the same kind of observation in both.

    python examples/ppo_in_the_dream.py --world carracing --steps 200000
    python examples/ppo_in_the_dream.py --world path/to/world --steps 50000 --out agents/ppo
    python examples/ppo_in_the_dream.py --world carracing --steps 1000000 --temperature 1.3

Without a bundled "carracing" world it falls back to an untrained one (plumbing only: its
dreams are noise, so the agent learns nothing useful).
"""

from __future__ import annotations

import argparse

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from dreamgym.sb3 import DreamVecEnv, ProgressCallback, load_sb3_policy, save_agent
from dreamgym.world import World, bundled_world_names
from dreamgym.wrappers import make_real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="carracing", help="bundle directory or bundled name")
    parser.add_argument("--steps", type=int, default=100_000, help="dream env steps for PPO")
    parser.add_argument("--num-envs", type=int, default=16, help="dreams stepped together")
    parser.add_argument(
        "--out", default="agents/ppo_in_the_dream", help="agent path (.zip + .json)"
    )
    parser.add_argument("--real-steps", type=int, default=1000, help="step cap of the real episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="dream temperature τ (default: the world's; on carracing 1.3 transferred better)",
    )
    args = parser.parse_args()

    if args.world == "carracing" and "carracing" not in bundled_world_names():
        print("no bundled 'carracing' world: using an untrained CarRacing-v3 world (noise dreams)")
        world = World.untrained("CarRacing-v3")
    else:
        world = World.load(args.world)

    # 1. Train in the dream: one batched core, SB3 semantics (same-step resets).
    venv = VecMonitor(
        DreamVecEnv(
            world, num_envs=args.num_envs, obs_mode="zh", temperature=args.temperature, seed=args.seed
        )
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=max(16, 2048 // args.num_envs),
        batch_size=256,
        seed=args.seed,
        device="cpu",
    )
    model.learn(args.steps, callback=ProgressCallback(args.steps))
    dream_returns = [e["r"] for e in model.ep_info_buffer]
    if dream_returns:
        print(
            f"mean dream return of the last {len(dream_returns)} episodes: {np.mean(dream_returns):.1f}"
        )

    # 2. Save: SB3's zip plus a sidecar naming the world and obs_mode.
    path = save_agent(model, args.out, world, "zh", steps=args.steps, seed=args.seed)
    print(f"saved {path}")

    # 3. Transfer: the same agent in the real env, seen through V and M.
    policy = load_sb3_policy(path, world)
    env = make_real(world, obs_mode=policy.obs_mode, max_episode_steps=args.real_steps)
    obs, _ = env.reset(seed=args.seed)
    total, done, steps = 0.0, False, 0
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs[None])[0])
        total += float(reward)
        steps += 1
        done = terminated or truncated
    env.close()
    print(f"real {world.env_id} return: {total:.1f} in {steps} steps")


if __name__ == "__main__":
    main()
