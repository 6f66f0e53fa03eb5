"""Whether a world may dream beside another: an ensemble's members and the worlds a controller
is scored in must share V (so z means the same), the env and its actions.

Below the agents, since the dream core's ensemble (`dreamgym.envs.ensemble`) checks its members
with it as the controller's population scoring (`dreamgym.agents.population`) does.
"""

from __future__ import annotations

import torch

from dreamgym.world import World


def check_ensemble_member(world: World, member: World) -> None:
    """A member's dream must speak `world`'s language: the same V (so the same z) and actions."""
    where = f"world {member.name!r}" + (f" ({member.path})" if member.path is not None else "")
    source = world.path if world.path is not None else "THE_WORLD'S_BUNDLE"
    if member.env_id != world.env_id:
        raise ValueError(
            f"{where} models {member.env_id}, not {world.env_id}: ensemble members must model "
            "the same env"
        )
    if member.action_space != world.action_space:
        raise ValueError(
            f"{where} has action space {member.action_space}, not {world.action_space}: "
            "ensemble members must share the env's actions"
        )
    ours, theirs = list(world.vae.state_dict().values()), list(member.vae.state_dict().values())
    same_v = (
        member.latent_dim == world.latent_dim
        and len(ours) == len(theirs)
        and all(
            torch.equal(a.detach().cpu().float(), b.detach().cpu().float())
            for a, b in zip(ours, theirs, strict=True)
        )
    )
    if not same_v:
        raise ValueError(
            f"{where} has another V than {world.name!r}: its z means something else. Train "
            f"ensemble members with `dreamgym train --vae-epochs 0 --vae-from {source}`"
        )
