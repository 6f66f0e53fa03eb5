"""Agents trained in the dream of a world: CMA-ES controllers (`cmaes`: the search, `cmaes_search`,
`cmaes_state`, `population`: a generation's batched fitness) and SB3 agents (`sb3`), both watched
by the exploitation alarm (`alarm`, with `cmaes_alarm` and `sb3_alarm`).

The stage after the world's training (`dreamgym.training`: V and M) and before its evaluation.
"""
