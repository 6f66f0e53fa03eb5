"""The error of a worker that cannot start: raised once, with the worker's own message.

A worker that fails to make its env (ViZDoom not installed on that node) or to load its policy
would otherwise surface as `BrokenProcessPool` or as one `RayTaskError` traceback per episode.
Workers turn such a failure into a `WorkerSetupError` (a ValueError, so the CLI prints it as one
line) naming where it happened and the original message; drivers re-raise it as it is.
"""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The Ray cluster failed under a job (a node died, the head went away): one line naming it."""


class WorkerSetupError(ValueError):
    """A worker could not make its env or load its policy (names the worker and the cause)."""


def setup_error(where: str, what: str, err: BaseException, fix: str = "") -> WorkerSetupError:
    """`err`, raised while `where` tried to `what`, as the one error the user sees."""
    if isinstance(err, WorkerSetupError):
        return err
    cause = str(err).strip() or type(err).__name__
    if not isinstance(err, (ValueError, OSError)) and type(err).__name__ not in cause:
        cause = f"{type(err).__name__}: {cause}"
    return WorkerSetupError(f"{where} could not {what}: {cause}{fix}")
