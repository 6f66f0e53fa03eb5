"""The other members of an ensemble dream (`DreamSettings.ensemble`): their worlds, state rows,
cell states and the generator that picks which member draws.

`DreamVectorEnv` keeps the world's own rows (what it observes) and hands the members' to
`EnsembleKernel` beside them each step; this holds the members' side, so that the env reads
the same with an ensemble or without. Why an ensemble at all: a search that learns one M's
errors is paid by them; members trained with other seeds err elsewhere, so where they
disagree the dream is unsure (MOPO: Yu et al. 2020; MOReL: Kidambi et al. 2020).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dreamgym.envs.members import check_ensemble_member
from dreamgym.models.mdn_kernel import DreamKernel, EnsembleKernel
from dreamgym.models.noise import draw_uniforms
from dreamgym.world import World


def load_member(world: World, member: Any, device: torch.device) -> World:
    """An ensemble member as a World on `device`, checked to speak `world`'s language."""
    loaded = member if isinstance(member, World) else World.load(member, device=device)
    loaded = loaded if loaded.device == device else loaded.copy_to(device)
    check_ensemble_member(world, loaded)
    if loaded.memory_kind != "mdnrnn":
        raise ValueError(
            f"ensemble member {loaded.name!r} has an {loaded.memory_kind.upper()} memory; ensemble "
            "dreams step MDN-RNN members only: drop it from `ensemble`"
        )
    if loaded.hidden_dim != world.hidden_dim:
        raise ValueError(
            f"ensemble member {loaded.name!r} has hidden size {loaded.hidden_dim}, the world "
            f"{world.hidden_dim}: train members with the world's --hidden"
        )
    return loaded


class EnsembleMembers:
    """Members 1..K−1 of an ensemble dream of `num_envs` envs (member 0 is the env's world)."""

    def __init__(
        self,
        world: World,
        kernel: DreamKernel,
        members: tuple[Any, ...],
        num_envs: int,
        device: torch.device,
        penalty: float,
        halt: float | None,
    ) -> None:
        self.worlds = [load_member(world, m, device) for m in members]
        self.kernel = EnsembleKernel(
            [kernel] + [DreamKernel(w.mdnrnn, kernel.mode) for w in self.worlds]
        )
        self.penalty, self.halt, self.device = penalty, halt, device
        self.generator = torch.Generator(device=device)
        """Picks each step's drawing member, beside the env's generator (whose stream stays
        the one-world dream's), seeded from the same seed."""
        self._x = [kernel.new_rows(num_envs, device) for _ in self.worlds]
        self._c = [torch.zeros(num_envs, world.hidden_dim, device=device) for _ in self.worlds]
        self._layout = kernel  # the rows' column layout (z, h views)

    def seed(self, seed: int) -> None:
        state = np.random.SeedSequence(int(seed), spawn_key=(1,)).generate_state(1)[0]
        self.generator.manual_seed(int(state))

    def reset_where(self, rows: torch.Tensor, z0: torch.Tensor) -> None:
        """Members' rows in `rows` start where the world's do: z0, h = c = 0."""
        for x, c in zip(self._x, self._c, strict=True):
            self._layout.z(x).index_copy_(0, rows, z0)
            self._layout.h(x).index_fill_(0, rows, 0.0)
            c.index_fill_(0, rows, 0.0)

    def step(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        actions: torch.Tensor,
        uniforms: torch.Tensor,
        temperature: float,
        parts: list[slice],
        noise_groups: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every member's step → (the world's next rows, reward − λ·d, P(done), d)."""
        picks = draw_uniforms(x.shape[0], 1, self.generator, self.device, noise_groups)
        rows, reward, p_done, spread = self.kernel.step(
            [x, *self._x], [c, *self._c], actions, uniforms, picks[:, 0], temperature, parts
        )
        self._x = rows[1:]
        if self.penalty:
            reward.sub_(spread, alpha=self.penalty)
        return rows[0], reward, p_done, spread

    def halted(self, spread: torch.Tensor) -> torch.Tensor | None:
        """Where MOReL's halt ends the dream (None: no halt set)."""
        return None if self.halt is None else spread > self.halt
