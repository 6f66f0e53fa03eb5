"""`dreamgym select`: a dataset of another dataset's episodes, picked by their return."""

from __future__ import annotations

from dreamgym.data.subset import SelectConfig, select_from_config


def run(config: SelectConfig) -> int:
    """Write the subset; print what it kept; 0 on success."""
    r = select_from_config(config)
    print(
        f"{r.out}: {r.episodes} of {r.of} episodes, {r.steps} steps, "
        f"mean return {r.mean_return:.1f} (shards hard-linked, nothing copied where links work)"
    )
    return 0
