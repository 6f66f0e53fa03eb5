"""`dreamgym demo`: the main job on the bundled worlds."""

from __future__ import annotations

import time

from dreamgym.demo import DemoConfig, run_demo, summary_table


def run(config: DemoConfig) -> int:
    """Run the demo, printing its progress and the dream-vs-real summary; 0 on success."""
    started = time.time()
    reports = run_demo(config, log=print)
    print("\n## Dream vs real\n" + summary_table(reports))
    print(f"\ndemo finished in {time.time() - started:.0f} s; everything is in {config.out}/")
    return 0
