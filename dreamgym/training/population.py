"""Kept for `dreamgym.envs.ensemble`, which imports `check_ensemble_member` from here.

Population scoring moved to `dreamgym.agents.population` and the check to
`dreamgym.envs.members`; once `envs/ensemble.py` imports it from there, delete this module.
"""

from dreamgym.envs.members import check_ensemble_member

__all__ = ["check_ensemble_member"]
