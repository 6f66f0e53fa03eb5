#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
cd "${ABLATION_DIR:-$HOME/dreamgym-data/ablation}"
# assumes dreamgym is installed in the active environment
# (run from a checkout of the commit named in docs/experiments/doom_takecover.md)
dreamgym train --data "${DOOM_DATA:-$HOME/dreamgym-data/doom-random}" --vae-from doom_takecover --vae-epochs 0 --rnn-epochs 20 --temperature 1.15 --threads 2 --no-progress --out row3b-sumnll --name doom_row3b --nll-reduction sum > row3b-sumnll.log 2>&1
"$here/ablation_diag_rows.sh" row3b-sumnll
