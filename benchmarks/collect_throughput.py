"""Real-env collection: steps/s of the process pool against Ray, and what Ray adds per episode.

Prints one Markdown table. Per env, the same `collect` (same seeds, so the same episodes: the
table checks the shards' sha256 agree) runs with

- `process pool`: `--workers W` spawned processes (W = --cpus, default 2);
- `Ray, local`: one local Ray with W CPUs (`ray.init(num_cpus=W)`), each episode a task;
- `Ray, 2 nodes`: a two-node cluster on 127.0.0.1 made with Ray's own `ray.cluster_utils.Cluster`
  (W/2 CPUs per node, at least 1), so tasks really go through the object store between raylets.

Both run `collect`'s own code (`data.workers.run_workers`, `data.collect._collect_on_ray`), timing
when each episode lands. "steady steps/s" is what a long collection gets: the steps of the
episodes that land after every worker's first one, over the time from the W-th landing to the
last (what each call pays once — spawning the pool, a worker importing and making its env — is
left out). "one call" is the whole call of N episodes, start-up included; Ray's own start-up, a
one-off per command (none on a running cluster), is reported on its own. "overhead ms/episode" is
Ray's extra wall time per mean-length episode and worker, from the steady rates (negative: Ray
was faster); "task round trip" times Ray tasks that do nothing but return a 1 MB result. Each cell is the best
of --repeats runs, alternating the backends, as the machine's load changes over time.

Everything stays on 127.0.0.1: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and RAY_AUTH_MODE=disabled
are set before Ray is imported.

Usage: python benchmarks/collect_throughput.py [--envs VizdoomTakeCover-v1,CarRacing-v3]
       [--episodes 16] [--car-episodes 4] [--car-max-steps 300] [--cpus 2] [--repeats 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from dreamgym.data.collect import _collect_on_ray, _dataset_header  # noqa: E402
from dreamgym.data.exploration import RANDOM_POLICY  # noqa: E402
from dreamgym.data.rollout import RolloutSpec  # noqa: E402
from dreamgym.data.workers import run_workers  # noqa: E402
from dreamgym.runners import run_on_ray  # noqa: E402

DOOM = "VizdoomTakeCover-v1"
CAR = "CarRacing-v3"
ROUND_TRIP_TASKS = 40
PAYLOAD_BYTES = 1 << 20


class _NullJob:
    """A Ray job whose episodes do nothing but return a shard-sized result."""

    what = "do nothing"

    def setup(self) -> None:
        return None

    def episode(self, state: None, index: int) -> bytes:
        return bytes(PAYLOAD_BYTES)

    def close(self, state: None) -> None:
        pass


def _timed_collect(env_id: str, episodes: int, max_steps: int | None, pool: int | None) -> dict:
    """One collection through `collect`'s own pool (`pool` workers) or Ray (None), with the time
    each episode landed: the steady rate leaves out the first landing of every worker."""
    header, prep = _dataset_header(env_id, RANDOM_POLICY, 0, max_steps)
    spec = RolloutSpec(env_id, max_steps, "random", 0, prep)
    landed: list[tuple[float, int, int, str]] = []

    def finished(entry: dict[str, Any]) -> None:
        landed.append((time.perf_counter(), entry["steps"], entry["index"], entry["sha256"]))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if pool is not None:
            run_workers(spec, Path(tmp), list(range(episodes)), pool, finished)
        else:
            _collect_on_ray(spec, Path(tmp), list(range(episodes)), "local", None, finished)
    skip = pool or 2
    steps = sum(s for _, s, _, _ in landed)
    return {
        "seconds": landed[-1][0] - start,
        "call": steps / (landed[-1][0] - start),
        "steady": sum(s for _, s, _, _ in landed[skip:]) / (landed[-1][0] - landed[skip - 1][0]),
        "steps": steps,
        "shas": [sha for *_, sha in sorted(landed, key=lambda x: x[2])],
    }


def _round_trip_ms() -> float:
    got: list[int] = []
    start = time.perf_counter()
    run_on_ray("local", _NullJob(), range(ROUND_TRIP_TASKS), lambda i, r: got.append(i))
    return 1000 * (time.perf_counter() - start) / ROUND_TRIP_TASKS


def _ray_local(cpus: int) -> tuple[Callable[[], None], float]:
    import ray

    start = time.perf_counter()
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
    )
    return ray.shutdown, time.perf_counter() - start


def _ray_cluster(cpus: int) -> tuple[Callable[[], None], float]:
    import ray
    from ray.cluster_utils import Cluster

    per_node = max(1, cpus // 2)
    start = time.perf_counter()
    node = {"num_cpus": per_node, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    cluster.add_node(num_cpus=per_node, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
    cluster.wait_for_nodes()

    def stop() -> None:
        ray.shutdown()
        cluster.shutdown()

    return stop, time.perf_counter() - start


def measure(env_id: str, episodes: int, max_steps: int | None, cpus: int, repeats: int) -> list:
    """One row per backend: its best runs over `repeats`, alternating the backends."""
    best: dict[str, dict[str, Any]] = {}
    backends = {"process pool": None, "Ray, local": _ray_local, "Ray, 2 nodes": _ray_cluster}
    for _ in range(repeats):
        for name, start in backends.items():
            b = best.setdefault(name, {"startup": None, "trip": None})
            if start is None:
                m = _timed_collect(env_id, episodes, max_steps, cpus)
            else:
                stop, up = start(cpus)
                try:
                    m = _timed_collect(env_id, episodes, max_steps, None)
                    trip = _round_trip_ms()
                finally:
                    stop()
                b["startup"] = min(b["startup"] or up, up)
                b["trip"] = min(b["trip"] or trip, trip)
            b["shas"] = m["shas"]
            b["steps"] = m["steps"]
            for k in ("steady", "call"):
                b[k] = max(b.get(k, 0.0), m[k])
            b["seconds"] = min(b.get("seconds", 1e9), m["seconds"])
    pool = best["process pool"]
    rows = []
    for name, b in best.items():
        rows.append(
            {
                "env": env_id,
                "backend": name,
                "steady": b["steady"],
                "rel": b["steady"] / pool["steady"],
                "call": b["call"],
                "call_s": b["seconds"],
                "startup": b["startup"],
                # wall time per (mean-length) episode and worker, Ray minus pool
                "extra_ms": 1000
                * cpus
                * b["steps"]
                / episodes
                * (1 / b["steady"] - 1 / pool["steady"]),
                "trip": b["trip"],
                "same": b["shas"] == pool["shas"],
                "steps": b["steps"],
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", default=DOOM, help=f"comma-separated env ids (e.g. {DOOM},{CAR})")
    ap.add_argument("--episodes", type=int, default=16, help="episodes per collection")
    ap.add_argument("--car-episodes", type=int, default=4, help="episodes for CarRacing-v3")
    ap.add_argument("--car-max-steps", type=int, default=300, help="step cap for CarRacing-v3")
    ap.add_argument("--cpus", type=int, default=2, help="pool workers = Ray CPUs")
    ap.add_argument("--repeats", type=int, default=2, help="runs per cell (the best is kept)")
    args = ap.parse_args()
    rows = []
    for env_id in args.envs.split(","):
        car = env_id == CAR
        episodes = args.car_episodes if car else args.episodes
        rows += measure(
            env_id, episodes, args.car_max_steps if car else None, args.cpus, args.repeats
        )
    print(f"\ncollect throughput, {args.cpus} CPUs ({os.cpu_count()} on this machine)\n")
    print(
        "| env | backend | steady steps/s | vs pool | one call steps/s (s) | Ray start-up s "
        "| overhead ms/episode | task round trip ms (1 MB) | same shards |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        up = "" if r["startup"] is None else f"{r['startup']:.1f}"
        trip = "" if r["trip"] is None else f"{r['trip']:.1f}"
        print(
            f"| {r['env']} | {r['backend']} | {r['steady']:,.0f} | {r['rel']:.2f} "
            f"| {r['call']:,.0f} ({r['call_s']:.1f}) | {up} | {r['extra_ms']:+.0f} | {trip} "
            f"| {'yes' if r['same'] else 'NO'} ({r['steps']:,} steps) |"
        )


if __name__ == "__main__":
    main()
