"""`dreamgym diagnose`: fixed policies dream vs real, and M teacher-forced along real episodes."""

from __future__ import annotations

from dreamgym.commands import print_json
from dreamgym.evaluation.diagnose import DiagnoseConfig, diagnose, diagnose_table


def run(config: DiagnoseConfig) -> int:
    """Run the job; print the tables (or, with --json, the report) and the files; 0 on success."""
    report = diagnose(config)
    if config.json:
        print_json(report)
        return 0
    print(diagnose_table(report))
    if report["flagged"]:
        print(f"\nflagged (dream ≠ real): {', '.join(report['flagged'])}")
    print(f"\nwrote {', '.join(report['files'])} to {report['out']}")
    return 0
