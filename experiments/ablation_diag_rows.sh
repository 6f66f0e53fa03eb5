#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
# diagnose each ablation world: fixed-policy suite (16 episodes each, seeds 20000+) and M
# teacher-forced along the held-out real episodes of the shared dataset.
set -u
cd "${ABLATION_DIR:-$HOME/dreamgym-data/ablation}"
# assumes dreamgym is installed in the active environment
# (run from a checkout of the commit named in docs/experiments/doom_takecover.md)
for w in "$@"; do
  dreamgym diagnose --world $w --episodes 16 --seed 20000 --workers 1 --data "${DOOM_DATA:-$HOME/dreamgym-data/doom-random}" --out diag-$w --json --no-progress > diag-$w.json 2> diag-$w.err
done
