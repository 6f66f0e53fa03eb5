#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
# Ablation M trainings on the same data (1,000 random TakeCover rollouts), V kept from the
# bundled doom_takecover world (z=32), H=256, 20 epochs, τ=1.15. Code: frozen main snapshot.
set -u
cd "${ABLATION_DIR:-$HOME/dreamgym-data/ablation}"
# assumes dreamgym is installed in the active environment
# (run from a checkout of the commit named in docs/experiments/doom_takecover.md)
common="--data "${DOOM_DATA:-$HOME/dreamgym-data/doom-random}" --vae-from doom_takecover --vae-epochs 0 --rnn-epochs 20 --temperature 1.15 --threads 1 --no-progress"
# row0: today's recipe (run with commit 58f27e6, before per-dim M; these flags are the same recipe now)
dreamgym train $common --out row0-today --name doom_row0 --mixture shared --rnn-sequences windows --seq-len 100 --nll-reduction sum --no-mask-terminal-z --done-weight 0 --rnn-lr-decay 1.0 > row0-today.log 2>&1
# row3: the paper's M (all new defaults)
dreamgym train $common --out row3-paper --name doom_row3 > row3-paper.log 2>&1
# row1: per-dim mixture only (old windows, sum NLL, auto done weight, no mask, no lr decay)
dreamgym train $common --out row1-perdim --name doom_row1 --mixture per_dim --rnn-sequences windows --seq-len 100 --nll-reduction sum --no-mask-terminal-z --done-weight 0 --rnn-lr-decay 1.0 > row1-perdim.log 2>&1
# row2: per-dim + whole-episode stateful training (old loss)
dreamgym train $common --out row2-episodes --name doom_row2 --mixture per_dim --rnn-sequences episodes --nll-reduction sum --no-mask-terminal-z --done-weight 0 --rnn-lr-decay 1.0 > row2-episodes.log 2>&1
