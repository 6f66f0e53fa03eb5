"""`dreamgym calibrate`: fit M's done-logit offset so that dreams last as long as real episodes."""

from __future__ import annotations

from dreamgym.commands import print_json
from dreamgym.evaluation.calibrate import CalibrateConfig, calibrate, calibration_table


def run(config: CalibrateConfig) -> int:
    """Run the job; print the table (or, with --json, the report) and where it was written."""
    report = calibrate(config)
    if config.json:
        print_json(report)
        return 0
    print(calibration_table(report))
    if report["written"]:
        print(
            f"\nwrote the offset and τ={report['temperature']:g} to {report['world']}/config.json"
        )
    else:
        print("\n--dry-run: the world is unchanged")
    return 0
