"""Copy a trained world into the package (dreamgym/worlds/NAME) with its dream-trained controller.

    python experiments/ship_world.py worlds/doom_takecover doom_takecover --controller RUN_DIR

Copies only what a bundle needs (config.json, the three weight files, MODEL_CARD.md, report/*.png;
never the training workspace `.train/`), re-verifies every checksum by loading the copy, then
ships the controller inside it (`controllers.bundle_controller`).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dreamgym.controllers import bundle_controller
from dreamgym.world import BUNDLED_DIR, CONFIG_FILE, MODEL_CARD_FILE, WEIGHT_FILES, World


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="trained world directory (written by dreamgym train)")
    parser.add_argument("name", help="bundled name, e.g. carracing or doom_takecover")
    parser.add_argument("--controller", help="controller run directory to ship inside the world")
    args = parser.parse_args()

    src, dest = Path(args.source), BUNDLED_DIR / args.name
    World.load(src)  # verify before copying
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "report").mkdir(parents=True)
    for name in (CONFIG_FILE, MODEL_CARD_FILE, *WEIGHT_FILES):
        shutil.copy2(src / name, dest / name)
    for png in sorted((src / "report").glob("*.png")):
        shutil.copy2(png, dest / "report" / png.name)
    world = World.load(dest)
    if args.controller:
        bundle_controller(world, args.controller)
        World.load(dest)
    for f in sorted(dest.rglob("*")):
        f.chmod(0o755 if f.is_dir() else 0o644)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"shipped {src} as {dest} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
