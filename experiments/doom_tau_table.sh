#!/bin/bash
# Paper Table 2 for a Doom world: one CMA-ES controller per temperature τ, the same budget each,
# each scored in the dream (at its own τ) and in the real env.
#   usage: bash experiments/doom_tau_table.sh WORLD OUT_PREFIX     (e.g. doom_takecover runs/tau)
# Env: TAUS ("0.1 0.5 1.0 1.15 1.3"), GENS (20), POP (32), REAL (100 real episodes), THREADS (2).
# Writes OUT_PREFIX_tT/ (controller), OUT_PREFIX_tT.dream.json and OUT_PREFIX_tT.real.json.
# Re-running resumes: controllers continue, finished evaluations are kept.
set -euo pipefail
W=$1; P=$2
for t in ${TAUS:-0.1 0.5 1.0 1.15 1.3}; do
  dreamgym controller --world "$W" --generations "${GENS:-20}" --popsize "${POP:-32}" --rollouts 16 \
    --temperature $t --threads "${THREADS:-2}" --seed 0 --out "${P}_t$t" --no-progress > "${P}_t$t.log" 2>&1
  [ -s "${P}_t$t.dream.json" ] || dreamgym evaluate --world "$W" --policy "${P}_t$t" --dream \
    --temperature $t --episodes 100 --seed 20000 --json --no-progress > "${P}_t$t.dream.json"
  [ -s "${P}_t$t.real.json" ] || dreamgym evaluate --world "$W" --policy "${P}_t$t" --real \
    --episodes "${REAL:-100}" --seed 20000 --workers 2 --json --no-progress > "${P}_t$t.real.json"
  echo "τ=$t done $(date -Is)"
done
