"""The command layer: one module per `dreamgym` sub-command.

Each module's `run(config) -> int` calls the library job (which returns a result and prints
nothing), prints what the user should see, and returns the exit code. `dreamgym.cli` builds the
parser from the jobs' config dataclasses and dispatches here; only this layer prints or exits.
"""

from __future__ import annotations

import json
from typing import Any


def print_json(obj: Any) -> None:
    """Print a result as JSON (numpy scalars and paths included)."""
    print(json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
