"""`dreamgym gap`: dream vs real returns of one policy: table, CSV, JSON, plot."""

from __future__ import annotations

import sys

from dreamgym.evaluation.gap import GAP_FILES, GapConfig, gap, gap_table


def run(config: GapConfig) -> int:
    """Run the job; print the table, the exploit warning (stderr) and the files; 0 on success."""
    report = gap(config)
    print(gap_table(report))
    if report["exploit_warning"]:
        print(report["warning"], file=sys.stderr)
    if config.out is not None:
        print(f"wrote {', '.join(GAP_FILES)} to {config.out}")
    return 0
