"""`dreamgym rank`: a panel of policies in the dream and in reality, ρ, r and the fitted line."""

from __future__ import annotations

import sys

from dreamgym.commands import print_json
from dreamgym.evaluation.rank import RankConfig, rank, rank_table


def run(config: RankConfig) -> int:
    """Run the job; print the table (or, with --json, the report), the warnings (stderr) and
    the files; 0 on success."""
    report = rank(config)
    if config.json:
        print_json(report)
    else:
        print(rank_table(report))
        print(f"\nwrote {', '.join(report['files'])} to {report['out']}")
    for line in report["warnings"]:
        print(line, file=sys.stderr)
    return 0
