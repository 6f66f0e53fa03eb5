"""The dream's fused step (`dreamgym.models.mdn_kernel`) and its sampler: the same distribution
as the paper's, the same numbers as M's unfused step, and a bfloat16 variant that stays close."""

from __future__ import annotations

import math

import pytest
import torch

from dreamgym.models.mdn_kernel import DreamKernel
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig, pick_components, rows_mm, sample_mdn
from dreamgym.models.noise import draw_uniforms, normal_from_uniform

CHI2_CRIT_DF4 = 18.467
"""The chi-square distribution's 0.999 quantile with 4 degrees of freedom (K = 5 components)."""


def _chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("shared", [False, True])
def test_drawn_components_follow_the_tempered_weights(temperature: float, shared: bool) -> None:
    """Component k is drawn w.p. π_k^{1/τ} / Σ π^{1/τ}: a chi-square test per column, fixed seed."""
    n, k = 20_000, 5
    pi = torch.tensor([[0.5, 0.05, 0.2], [0.2, 0.05, 0.2], [0.15, 0.3, 0.2], [0.1, 0.3, 0.2]])
    pi = torch.cat([pi, 1 - pi.sum(0, keepdim=True)])  # (K, C): each column sums to 1
    if shared:
        pi = pi[:, :1]
    cols = pi.shape[1]
    logits = (pi.log() + 3.0).expand(n, k, cols)  # unnormalised logits give the same draw
    values = torch.arange(k, dtype=torch.float32).view(1, 1, k, 1).expand(n, 1, k, cols)
    u = torch.rand(n, cols, generator=torch.Generator().manual_seed(0))
    drawn = pick_components(logits, u, temperature, values)[:, 0].long()  # (n, C)
    want = pi.double() ** (1.0 / temperature)
    want = want / want.sum(0)
    for j in range(cols):
        counts = torch.bincount(drawn[:, j], minlength=k).double()
        assert _chi2(counts, want[:, j]) < CHI2_CRIT_DF4, (j, counts, want[:, j])


def test_zero_weights_are_never_drawn_and_cold_draws_take_the_mode() -> None:
    n, k = 4_000, 4
    logits = torch.tensor([-math.inf, 0.0, -math.inf, 1.0]).view(1, k, 1).expand(n, k, 1)
    values = torch.arange(k, dtype=torch.float32).view(1, 1, k, 1).expand(n, 1, k, 1)
    u = torch.rand(n, 1, generator=torch.Generator().manual_seed(1))
    u[0] = 0.0  # the edges of [0, 1)
    u[1] = 1.0 - 2.0**-24
    drawn = pick_components(logits, u, 1.0, values).flatten()
    assert set(drawn.tolist()) == {1.0, 3.0}
    assert set(pick_components(logits, u, 1e-8, values).flatten().tolist()) == {3.0}


def test_box_muller_gives_standard_normals() -> None:
    u = torch.rand(50_000, 6, generator=torch.Generator().manual_seed(2))
    z = normal_from_uniform(u, 5)
    assert z.shape == (50_000, 5) and torch.isfinite(z).all()
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=0.02)
    assert torch.allclose(z.std(0), torch.ones(5), atol=0.02)
    assert abs(float(torch.corrcoef(z.T)[0, 3])) < 0.02  # cos and sin halves uncorrelated


def test_one_generator_call_and_common_random_numbers() -> None:
    a = draw_uniforms(12, 7, torch.Generator().manual_seed(3), "cpu", groups=4)
    assert torch.equal(a[0], a[4]) and torch.equal(a[3], a[11]) and not torch.equal(a[0], a[1])
    b = draw_uniforms(12, 7, torch.Generator().manual_seed(3), "cpu", groups=4)
    assert torch.equal(a, b)


def _model(mixture: str = "per_dim", reward_event: float = 0.0) -> MDNRNN:
    torch.manual_seed(0)
    cfg = MDNRNNConfig(
        latent_dim=6,
        action_dim=3,
        hidden_dim=20,
        n_mixtures=3,
        mixture=mixture,
        done_pos_weight=4.0,
        done_logit_offset=-0.3,
        reward_event=reward_event,
    )
    return MDNRNN(cfg).eval()


def _kernel_inputs(kernel: DreamKernel, b: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(4)
    x = kernel.new_rows(b, "cpu")
    x[:, : kernel.ones_col] = torch.randn(b, kernel.ones_col, generator=g)
    c = torch.randn(b, kernel.hidden, generator=g)
    a = torch.rand(b, kernel.action, generator=g)
    u = torch.rand(b, kernel.noise.width, generator=g)
    return x, c, a, u


@pytest.mark.parametrize("mixture", ["per_dim", "shared"])
@pytest.mark.parametrize("temperature", [1.0, 0.4])
@pytest.mark.parametrize("reward_event", [0.0, 2.5])
def test_kernel_draws_what_step_and_sample_mdn_draw(
    mixture: str, temperature: float, reward_event: float
) -> None:
    """The fused step = M's step + `sample_mdn` on the same uniforms, up to float rounding."""
    model = _model(mixture, reward_event)
    kernel = DreamKernel(model)
    x, c, a, u = _kernel_inputs(kernel, 9)
    lat, hid = kernel.latent, kernel.hidden
    with torch.inference_mode():
        out, (h, c_ref) = model.step(x[:, :lat].clone(), a, (x[:, lat : lat + hid].clone(), c))
        z_ref = sample_mdn(out.logpi, out.mu, out.logsigma, temperature, uniforms=u)
        c_new = c.clone()
        x_next, reward, p_done = kernel.step(x.clone(), c_new, a, u, temperature)
    assert torch.equal(kernel.h(x_next), h) and torch.equal(c_new, c_ref)
    assert torch.allclose(kernel.z(x_next), z_ref, atol=1e-5)
    assert torch.allclose(reward, out.reward, atol=1e-6)
    assert torch.allclose(p_done, model.done_probability(out.done_logit), atol=1e-6)
    assert torch.equal(x_next[:, kernel.ones_col], torch.ones(9))


def test_lstm_rows_is_the_lstm_cell() -> None:
    model = _model()
    z, a = torch.randn(5, 6), torch.randn(5, 3)
    h, c = torch.randn(5, 20), torch.randn(5, 20)
    with torch.no_grad():
        want = torch.lstm_cell(
            torch.cat([z, a], 1),
            (h, c),
            model.lstm.weight_ih_l0,
            model.lstm.weight_hh_l0,
            model.lstm.bias_ih_l0,
            model.lstm.bias_hh_l0,
        )
    with torch.inference_mode():
        got = model.recurrent_step(z, a, (h, c))
    assert torch.allclose(got[0], want[0], atol=1e-6) and torch.allclose(got[1], want[1], atol=1e-6)


@pytest.mark.parametrize("mode", ["bfloat16", "bfloat16-emulated"])
def test_bfloat16_kernel_stays_close_to_float32(mode: str) -> None:
    """bf16 matmuls (torch's own kernel, emulated and slow on CPUs without native bf16: small
    sizes only; or their numbers through float32 matmuls) round the gates and the heads'
    outputs; the state and the draw stay float32 and near the float32 step's."""
    model = _model()
    k32, k16 = DreamKernel(model), DreamKernel(model, mode)
    x, c, a, u = _kernel_inputs(k32, 16)
    with torch.inference_mode():
        c32, c16 = c.clone(), c.clone()
        x32, r32, p32 = k32.step(x.clone(), c32, a, u, 1.0)
        x16, r16, p16 = k16.step(x.clone(), c16, a, u, 1.0)
    assert x16.dtype == torch.float32 and c16.dtype == torch.float32 and r16.dtype == torch.float32
    assert torch.allclose(c16, c32, atol=0.05) and torch.allclose(k16.h(x16), k32.h(x32), atol=0.05)
    assert torch.allclose(r16, r32, atol=0.05) and torch.allclose(p16, p32, atol=0.02)
    # the same uniforms mostly draw the same components: most z's are close
    close = (k16.z(x16) - k32.z(x32)).abs() < 0.1
    assert close.float().mean() > 0.9
    with pytest.raises(ValueError, match="matmul mode"):
        DreamKernel(model, "float16")


def test_emulated_bfloat16_is_torchs_bfloat16_matmul() -> None:
    """float32 matmuls of bf16-rounded operands, the result rounded: what a bf16 matmul computes
    (float32 sums), so the two modes differ by the sums' order only (one bf16 rounding step)."""
    model = _model()
    x, c, a, u = _kernel_inputs(DreamKernel(model), 16)
    with torch.inference_mode():
        got = {}
        for mode in ("bfloat16", "bfloat16-emulated"):
            gates = rows_mm(x, model.fused_weight("lstm", mode), mode)
            got[mode] = gates
    diff = (got["bfloat16"] - got["bfloat16-emulated"]).abs()
    assert float((diff <= 2.0**-7 * got["bfloat16"].abs()).float().mean()) == 1.0
    assert float((diff == 0).float().mean()) > 0.9


# --- the dream's precision setting ----------------------------------------------------------------
def test_precision_is_a_validated_setting_and_auto_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import build_tiny_world

    from dreamgym.envs.dream import DreamVectorEnv
    from dreamgym.envs.settings import DreamSettings
    from dreamgym.utils import hardware

    assert DreamSettings().precision == "auto"
    with pytest.raises(ValueError, match="precision must be one of"):
        DreamSettings(precision="fp16")
    world = build_tiny_world(discrete=False)
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    assert DreamVectorEnv(world, num_envs=2, device="cpu").precision == "float32"
    monkeypatch.setattr(hardware, "native_bf16", lambda device: True)
    env = DreamVectorEnv(world, num_envs=2, device="cpu")
    assert env.precision == "bfloat16" and env.kernel.mode == "bfloat16"
    assert DreamVectorEnv(world, 2, device="cpu", precision="float32").precision == "float32"


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_same_seed_same_dream_within_a_precision(precision: str) -> None:
    from conftest import build_tiny_world

    from dreamgym.envs.dream import DreamVectorEnv

    world = build_tiny_world(discrete=False, done_logit=-2.0)
    actions = torch.rand(30, 8, 3, generator=torch.Generator().manual_seed(5))

    def run(seed: int) -> torch.Tensor:
        env = DreamVectorEnv(world, num_envs=8, device="cpu", precision=precision)
        obs = [torch.cat([env.reset_tensors(seed=seed), torch.zeros(8, 1)], 1)]
        for a in actions:
            step = env.step_tensors(a)
            obs.append(torch.cat([step.obs, step.reward[:, None]], 1))
        return torch.stack(obs)

    a, b = run(7), run(7)
    assert torch.equal(a, b) and not torch.equal(a, run(8))


def test_precision_reaches_the_spec_kwargs() -> None:
    import gymnasium as gym

    env = gym.make("DreamCarRacing-v0", device="cpu", precision="float32")
    assert env.spec.kwargs["precision"] == "float32"
    assert env.unwrapped.core.precision == "float32"
    env.close()


@pytest.mark.parametrize("threads", [2, 3])
def test_rows_split_across_threads_step_as_one_batch(threads: int) -> None:
    """With several torch threads the batch is split across threads: the same numbers."""
    from dreamgym.models.mdn_kernel import MIN_SPLIT_ROWS, split_rows
    from dreamgym.utils.threads import torch_threads

    model = _model()
    kernel = DreamKernel(model)
    b = 2 * MIN_SPLIT_ROWS + 7
    x, c, a, u = _kernel_inputs(kernel, b)
    with torch.inference_mode():
        with torch_threads(1):
            assert len(split_rows(b, torch.device("cpu"))) == 1
            one = kernel.step(x.clone(), c.clone(), a, u, 0.8)
        with torch_threads(threads):
            assert len(split_rows(b, torch.device("cpu"))) == 2
            c_split = c.clone()
            split = kernel.step(x.clone(), c_split, a, u, 0.8)
    for got, want in zip(split, one, strict=True):
        assert torch.equal(got, want)
    assert split_rows(b, torch.device("cuda")) == [slice(0, b)]


def test_the_dream_is_the_same_on_one_thread_and_on_two() -> None:
    from conftest import build_tiny_world

    from dreamgym.envs.dream import DreamVectorEnv
    from dreamgym.models.mdn_kernel import MIN_SPLIT_ROWS
    from dreamgym.utils.threads import torch_threads

    world = build_tiny_world(discrete=False, done_logit=-2.0)
    n = 2 * MIN_SPLIT_ROWS
    actions = torch.rand(8, n, 3, generator=torch.Generator().manual_seed(9))

    def run(threads: int) -> list[torch.Tensor]:
        env = DreamVectorEnv(world, num_envs=n, device="cpu", noise_groups=16)
        out = [env.reset_tensors(seed=3).clone()]
        with torch_threads(threads):
            for a in actions:
                step = env.step_tensors(a)
                out += [step.obs.clone(), step.reward, step.done]
            assert torch.get_num_threads() == threads  # the step gives the setting back
        return out

    for one, two in zip(run(1), run(2), strict=True):
        assert torch.equal(one, two)
