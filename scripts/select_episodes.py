"""A dataset of some of another dataset's episodes, picked by return: e.g. the *failure* episodes
of a controller's rollouts for the paper's iterative loop (`dreamgym.data.subset`).

usage: python scripts/select_episodes.py SRC DST [--max-return R] [--min-return R]
e.g.   python scripts/select_episodes.py $D/car-onpol-s11 $D/car-onpol-s11-fail --max-return 700

Shards are hard-linked, so no raw data is duplicated; DST must not exist yet.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dreamgym.data.subset import select_episodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="a dataset written by dreamgym collect")
    p.add_argument("dst", type=Path, help="the new dataset's directory (must not exist)")
    p.add_argument("--max-return", type=float, default=math.inf, help="keep returns below this")
    p.add_argument("--min-return", type=float, default=-math.inf, help="keep returns from this up")
    args = p.parse_args()
    try:
        r = select_episodes(args.src, args.dst, args.min_return, args.max_return)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(
        f"{r.out}: {r.episodes} of {r.of} episodes, {r.steps} steps, mean return {r.mean_return:.1f}"
    )


if __name__ == "__main__":
    main()
