"""MODEL_CARD.md of a trained world: what it is, how it was trained, how well it predicts."""

from __future__ import annotations

import json
from typing import Any


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "n/a" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)


def _machine_text(m: dict[str, Any]) -> str:
    return (
        f"{m.get('cpu_count')} CPUs, torch {m.get('torch')} ({m.get('torch_threads')} threads) on "
        f"{m.get('device')}, {m.get('platform')}, Python {m.get('python')}"
    )


def _dataset_lines(prov: dict[str, Any]) -> list[str]:
    """The card's dataset line(s): one per `--data` directory, with its policy and episodes."""
    data, policy = prov.get("data"), prov.get("data_policy")
    if not isinstance(data, list):
        lines = [f"- Dataset: `{data}` (policy `{policy}`)"]
    else:
        counts = prov.get("data_episodes") or [None] * len(data)
        lines = ["- Datasets:"] + [
            f"  - `{d}` (policy `{p}`, {n} episodes)"
            for d, p, n in zip(data, policy, counts, strict=False)
        ]
    if prov.get("vae_from"):
        lines.append(f"- V started from the world `{prov['vae_from']}`.")
    return lines


MIXTURE_TEXT = {
    "per_dim": "per latent dim (each dim its own mixture, as the paper's code)",
    "shared": "shared by all latent dims (one component choice for the whole of z)",
}
SEQUENCES_TEXT = {
    "episodes": "whole episodes in {seq_len}-step chunks, the LSTM state carried between chunks "
    "and zeroed at episode starts (as the paper's code)",
    "windows": "{seq_len}-step windows, each from h = 0",
}


def _rssm_training_line(t: dict[str, Any]) -> str:
    """How an RSSM was trained: its chunks, its loss's parts and their options."""
    over = t.get("overshooting") or 0
    return (
        f"- M (the RSSM) trained on whole episodes in {t.get('seq_len')}-step chunks, the state "
        "carried between chunks and restarted at episode starts; loss: the z decoder's NLL from "
        f"the posterior's features, reward MSE ×{_fmt(t.get('reward_weight'))}, the done BCE and "
        f"KL(posterior ‖ prior) balanced α = {_fmt(t.get('kl_balance'))}, free nats "
        f"{_fmt(t.get('free_nats'))}"
        f"{f', latent overshooting to {over} steps' if over > 1 else ''}"
        f"{', terminal frames left out of the NLL' if t.get('mask_terminal_z') else ''}; "
        f"{'V means' if t.get('z_means') else 'z drawn from V afresh each epoch'}; lr "
        f"{_fmt(t.get('rnn_lr'))}, gradient clip {_fmt(t.get('grad_clip'))}."
    )


def _m_training_line(prov: dict[str, Any]) -> str:
    """How M was trained: its sequences, NLL reduction, terminal masking and lr schedule."""
    t = prov.get("training") or {}
    if not t:
        return "- M's training: not recorded."
    if t.get("memory") == "rssm":
        return _rssm_training_line(t)
    sequences = t.get("rnn_sequences") or "windows"
    text = SEQUENCES_TEXT.get(sequences, sequences).format(seq_len=t.get("seq_len"))
    decay = t.get("rnn_lr_decay")
    lr = f"lr {_fmt(t.get('rnn_lr'))}" + (
        f" decaying ×{decay} a step to {_fmt(t.get('rnn_lr_min'))}" if decay and decay < 1 else ""
    )
    overpay = t.get("reward_overpay") or 1.0
    reward = (
        f"; reward over-predictions weighted ×{_fmt(overpay)} in the MSE" if overpay != 1 else ""
    )
    if t.get("reward_sum_weight"):
        reward += (
            f"; plus ×{_fmt(t['reward_sum_weight'])} the squared sum of each training row's reward "
            "errors (return consistency)"
        )
    if t.get("sampled_inputs"):
        reward += (
            f"; {_fmt(100 * t['sampled_inputs'])}% of M's input frames replaced by its own "
            "one-step samples (parallel scheduled sampling)"
        )
    if t.get("reward_events") is not None:
        reward += (
            f"; rewards above {_fmt(t['reward_events'])} are events, classified by their own "
            "head and paid at their mean size, the rest regressed"
        )
    return (
        f"- M trained on {text}; NLL {t.get('nll_reduction') or 'sum'} over z's dims"
        f"{', terminal frames left out' if t.get('mask_terminal_z') else ''}{reward}; {lr}."
    )


def _memory_text(config: dict[str, Any]) -> str:
    """M in a sentence: which family and its sizes."""
    if config.get("memory", "mdnrnn") == "rssm":
        m = config["rssm"]
        stoch = (
            f"a Gaussian s of {m['stoch_dim']} dims (PlaNet)"
            if m["stoch"] == "gaussian"
            else f"{m['groups']} categorical s of {m['classes']} classes each (DreamerV2/V3)"
        )
        return (
            f"M, an RSSM (recurrent state-space model: a GRU h of {m['deter_dim']} units and "
            f"{stoch}, MLPs of {m['hidden_dim']} units)"
        )
    mixture = config["mdnrnn"].get("mixture", "shared")
    return (
        f"M, an MDN-RNN with {config['mdnrnn']['hidden_dim']} LSTM units and "
        f"{config['mdnrnn']['n_mixtures']} Gaussians {MIXTURE_TEXT.get(mixture, mixture)}"
    )


def _summary_lines(config: dict[str, Any], name: str) -> list[str]:
    """Title, what the world is, how to make it, and its dream settings."""
    memory = config.get("memory", "mdnrnn")
    return [
        f"# World: {name}",
        "",
        f'A learned model of `{config["env_id"]}` (Ha & Schmidhuber 2018, "World Models"): V, a '
        f"ConvVAE with a {config['vae']['latent_dim']}-d latent, and {_memory_text(config)}, "
        "trained by `dreamgym train`.",
        "",
        "```python",
        "import gymnasium as gym, dreamgym",
        f'env = gym.make("DreamEnv-v0", world="{name}")  # or the bundle directory',
        "```",
        "",
        f"- Default temperature τ: {config.get('temperature', 1.0)}; dream episodes are truncated "
        f"at {config.get('max_episode_steps')} steps.",
        f"- Done weight in M's loss: {_fmt(config[memory].get('done_pos_weight'))} (undone when "
        "the dream samples termination).",
        f"- Weights stored as {config.get('weights_dtype', 'float32')}.",
        "",
    ]


def _data_and_training_lines(prov: dict[str, Any]) -> list[str]:
    """The datasets and episode split, the command, the machine and each stage's wall time."""
    eps = prov.get("episodes", {})
    stages = prov.get("stages", {})
    lines = [
        "## Data",
        "",
        *_dataset_lines(prov),
        f"- Episodes: {eps.get('train')} for training, {eps.get('val')} held out; "
        f"{prov.get('real_steps')} real env steps, {prov.get('frames')} frames.",
        "",
        "## Training",
        "",
        f"- Command: `{prov.get('command')}`",
        _m_training_line(prov),
        f"- Machine: {_machine_text(prov.get('machine') or {})}",
        "",
        "| stage | epochs | wall time (s) |",
        "|---|---|---|",
    ]
    for stage in ("vae", "encode", "rnn"):
        s = stages.get(stage, {})
        lines.append(f"| {stage} | {_fmt(s.get('epochs'))} | {_fmt(s.get('seconds'), '.1f')} |")
    return lines


def _metrics_lines(metrics: dict[str, Any]) -> list[str]:
    """The held-out metrics table, each model score beside its trivial baseline."""
    v, m = metrics.get("vae", {}), metrics.get("rnn", {})
    done = m.get("done", {})
    return [
        "",
        "## Held-out metrics (validation episodes)",
        "",
        "| metric | model | baseline |",
        "|---|---|---|",
        f"| V reconstruction MSE per pixel ([0,1]) | {_fmt(v.get('recon_mse'))} | "
        f"{_fmt(v.get('baseline_mean_frame_mse'))} (mean frame) |",
        f"| M NLL of z_t+1 per latent dim (nats) | {_fmt(m.get('nll_per_dim'))} | "
        f"{_fmt(m.get('baseline_previous_z_nll_per_dim'))} (z_t+1 ~ N(z_t, Var Δz)); "
        f"{_fmt(m.get('baseline_static_gaussian_nll_per_dim'))} (static Gaussian) |",
        f"| reward MAE per step | {_fmt(m.get('reward_mae'))} | "
        f"{_fmt(m.get('reward_mae_baseline_mean'))} (training mean) |",
        f"| done precision / recall / F1 at p > 0.5 | {_fmt(done.get('precision'))} / "
        f"{_fmt(done.get('recall'))} / {_fmt(done.get('f1'))} | rate {_fmt(done.get('rate'))} |",
        f"| done ROC AUC; best F1 (threshold) | {_fmt(done.get('auc'))}; "
        f"{_fmt(done.get('best_f1'))} ({_fmt(done.get('best_threshold'))}) | 0.5 (chance AUC) |",
        "",
        "M is scored on whole validation episodes from h = 0 with z sampled from V's posterior, as "
        "the dream starts; the done metrics use the dream's probability (training weight undone). "
        f"Validation steps: {_fmt(m.get('steps'))}; done events among them: "
        f"{_fmt(done.get('positives'))}.",
        "",
        "Report images: `report/reconstructions.png` (V), `report/dream_rollout.png` (an open-loop "
        "dream from a real start with the recorded actions, next to reality).",
        "",
    ]


def _rssm_metrics_lines(metrics: dict[str, Any]) -> list[str]:
    """The RSSM's held-out metrics: open-loop z error beside copy-last, the loss, reward, done."""
    v, m = metrics.get("vae", {}), metrics.get("rssm", {})
    done, ol = m.get("done", {}), m.get("openloop", {})
    ks = list((ol.get("rmse") or {}).keys())
    rmse = " / ".join(_fmt((ol.get("rmse") or {}).get(k)) for k in ks)
    copy = " / ".join(_fmt((ol.get("copy_last") or {}).get(k)) for k in ks)
    return [
        "",
        "## Held-out metrics (validation episodes)",
        "",
        "| metric | model | baseline |",
        "|---|---|---|",
        f"| V reconstruction MSE per pixel ([0,1]) | {_fmt(v.get('recon_mse'))} | "
        f"{_fmt(v.get('baseline_mean_frame_mse'))} (mean frame) |",
        f"| open-loop z RMSE at k = {' / '.join(ks)} steps | {rmse} | {copy} (copy the last "
        "real z) |",
        f"| z NLL per latent dim from the posterior (nats) | {_fmt(m.get('nll_per_dim'))} | |",
        f"| KL(posterior ‖ prior) per step (nats) | {_fmt(m.get('kl'))} | |",
        f"| reward MAE per step | {_fmt(m.get('reward_mae'))} | "
        f"{_fmt(m.get('reward_mae_baseline_mean'))} (training mean) |",
        f"| done precision / recall / F1 at p > 0.5 | {_fmt(done.get('precision'))} / "
        f"{_fmt(done.get('recall'))} / {_fmt(done.get('f1'))} | rate {_fmt(done.get('rate'))} |",
        f"| done ROC AUC; best F1 (threshold) | {_fmt(done.get('auc'))}; "
        f"{_fmt(done.get('best_f1'))} ({_fmt(done.get('best_threshold'))}) | 0.5 (chance AUC) |",
        "",
        f"The open-loop error: the RSSM observes {_fmt(ol.get('context'))} real frames, then "
        f"imagines k steps with the recorded actions (its prior at τ = 0) on {_fmt(ol.get('windows'))} "
        "held-out windows; n/a where no held-out episode is long enough. The posterior has seen "
        "the frame it decodes, so its NLL is not an MDN-RNN's one-step NLL. Reward and done "
        "heads read the posterior along whole validation episodes; the done metrics use the "
        f"dream's probability (training weight undone). Validation steps: {_fmt(m.get('steps'))}; "
        f"done events among them: {_fmt(done.get('positives'))}.",
        "",
        "Report images: `report/reconstructions.png` (V), `report/dream_rollout.png` (an open-loop "
        "dream from a real start with the recorded actions, next to reality).",
        "",
    ]


def _limits_and_json_lines(metrics: dict[str, Any], prov: dict[str, Any]) -> list[str]:
    """Known limits, then every metric and the provenance as JSON in a folded section."""
    return [
        "## Known limits",
        "",
        "- The dream is only as good as the data: states the collection policy never reached are "
        "guesses, and a controller can exploit M's errors (the paper's \"cheating\" worlds; raise "
        "τ to make exploitation harder, §4.5).",
        "- Rewards and terminations come from M's heads, not from the real env's rules.",
        "",
        "<details><summary>All metrics and provenance (JSON)</summary>",
        "",
        "```json",
        json.dumps({"metrics": metrics, "provenance": prov}, indent=2),
        "```",
        "</details>",
        "",
    ]


def model_card(config: dict[str, Any]) -> str:
    """MODEL_CARD.md of a trained world: what it is, how it was trained, how well it predicts."""
    prov = config.get("provenance", {})
    metrics = config.get("metrics", {})
    name = config.get("name") or config["env_id"]
    lines = [
        *_summary_lines(config, name),
        *_data_and_training_lines(prov),
        *(_rssm_metrics_lines if "rssm" in metrics else _metrics_lines)(metrics),
        *_limits_and_json_lines(metrics, prov),
    ]
    return "\n".join(lines)
