#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
# Usage: ablation_ctrl_rows.sh WORLD OUT [controller flags]; row0: row0-today row0-ctrl (30 generations,
# then-current search), row3: row3-paper row3-ctrl --no-crn --keep best-candidate --eval-mean-every 0
# --obs-mode zh, row4: row3-paper row4-ctrl --obs-mode zch --eval-mean-every 2.
# Ablation controllers (20 generations, popsize 64, 16 rollouts, τ = the world's 1.15).
set -u
cd "${ABLATION_DIR:-$HOME/dreamgym-data/ablation}"
# assumes dreamgym is installed in the active environment
# (run from a checkout of the commit named in docs/experiments/doom_takecover.md)
world=$1; out=$2; shift 2
dreamgym controller --world $world --out $out --generations 20 --popsize 64 --rollouts 16 --threads 1 --no-progress "$@" > $out.log 2>&1
dreamgym evaluate --world $world --policy $out --real --episodes 100 --seed 50000 --workers 1 --json --no-progress > $out-real.json 2> $out-real.err
