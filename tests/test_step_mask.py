"""Tests for the learned step mask: projection, budget schedule, policy gradient, read-out, weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tsimpute.diffusion.schedules import NoiseSchedule, uniform_steps
from tsimpute.diffusion.step_mask import (
    StepMask,
    cubic_budget,
    effective_masks,
    elbo_weight,
    loss_weight,
    mask_update,
    project_capped_simplex,
    sample_kept_timestep,
)

# ---------------------------------------------------------------- projection


def bisection_projection(z: torch.Tensor, budget: float) -> torch.Tensor:
    """Independent reference: bisection on the shift v in float64."""
    z = z.double()
    if float(z.clamp(0, 1).sum()) <= budget:
        return z.clamp(0, 1)
    lo, hi = 0.0, float(z.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float((z - mid).clamp(0, 1).sum()) > budget:
            lo = mid
        else:
            hi = mid
    return (z - hi).clamp(0, 1)


def assert_kkt(z: torch.Tensor, s: torch.Tensor, budget: float, tol: float = 1e-9) -> None:
    """KKT conditions of min ||s - z||^2 s.t. 0 <= s <= 1, sum(s) <= budget (sufficient: convex)."""
    z, s = z.double(), s.double()
    assert bool((s >= 0).all()) and bool((s <= 1).all())
    assert float(s.sum()) <= budget + tol
    inner = (s > 0) & (s < 1)
    # s = clip(z - v, 0, 1) for some v >= 0: v = z - s on interior entries,
    # z <= v where s = 0 and z - 1 >= v where s = 1.
    lo = max([0.0] + z[s == 0].tolist() + (z - s)[inner].tolist())
    hi = min([math.inf] + (z[s == 1] - 1).tolist() + (z - s)[inner].tolist())
    assert lo <= hi + tol
    if lo > tol:  # v > 0 only with an active budget (complementary slackness)
        assert float(s.sum()) == pytest.approx(budget, abs=tol)


@pytest.mark.parametrize("n_steps", [1, 5, 50, 1000])
@pytest.mark.parametrize("seed", range(4))
def test_projection_matches_reference_and_kkt(n_steps, seed):
    g = torch.Generator().manual_seed(seed)
    for scale in (0.3, 1.0, 3.0):
        z = torch.randn(n_steps, generator=g, dtype=torch.float64) * scale + 0.5
        for budget in (1.0, float(torch.rand(1, generator=g)) * n_steps, 0.5 * n_steps, n_steps + 1.0):
            s = project_capped_simplex(z, budget)
            assert s.dtype == torch.float64 and s.shape == z.shape
            torch.testing.assert_close(s, bisection_projection(z, budget), atol=1e-9, rtol=0)
            assert_kkt(z, s, budget)


def test_projection_ties_and_special_budgets():
    ones = torch.ones(10)
    torch.testing.assert_close(project_capped_simplex(ones, 3.0), torch.full((10,), 0.3))
    torch.testing.assert_close(project_capped_simplex(torch.full((5,), 0.7), 2.0), torch.full((5,), 0.4))
    z = torch.tensor([2.0, 2.0, 0.5, 0.5, -1.0, 0.5], dtype=torch.float64)
    for budget in (0.5, 1.0, 2.0, 2.5, 3.0):
        s = project_capped_simplex(z, budget)
        torch.testing.assert_close(s, bisection_projection(z, budget), atol=1e-12, rtol=0)
        assert_kkt(z, s, budget)
        assert s[0] == s[1] and s[2] == s[3] == s[5] and s[4] == 0
    ints = torch.randint(-2, 3, (200,), generator=torch.Generator().manual_seed(0)).double()
    assert_kkt(ints, project_capped_simplex(ints, 7.0), 7.0)
    assert project_capped_simplex(z, 0.0).abs().sum() == 0
    torch.testing.assert_close(project_capped_simplex(z, 6.0), z.clamp(0, 1))  # K >= T: clip
    torch.testing.assert_close(project_capped_simplex(z, 100.0), z.clamp(0, 1))
    assert project_capped_simplex(torch.tensor([-0.5, -2.0]), 0.0).tolist() == [0.0, 0.0]
    assert project_capped_simplex(ones, 2.0).dtype == torch.float32


@pytest.mark.parametrize("budget", [-1.0, float("nan")])
def test_projection_bad_budget_raises(budget):
    with pytest.raises(ValueError, match="budget"):
        project_capped_simplex(torch.ones(3), budget)


def test_projection_bad_input_raises():
    with pytest.raises(TypeError, match="budget"):
        project_capped_simplex(torch.ones(3), "1")
    with pytest.raises(ValueError, match="z"):
        project_capped_simplex(torch.ones(2, 3), 1.0)
    with pytest.raises(ValueError, match="z"):
        project_capped_simplex(torch.tensor([1.0, float("nan")]), 1.0)


# ---------------------------------------------------------------- budget schedule


def test_cubic_budget_endpoints_and_monotone():
    n, e1, gf = 20, 4, 0.2
    assert cubic_budget(0, n, e1, gf) == 1.0
    assert cubic_budget(3.99, n, e1, gf) == 1.0
    assert cubic_budget(e1, n, e1, gf) == 1.0
    assert cubic_budget(n, n, e1, gf) == pytest.approx(gf)
    assert cubic_budget(n + 5, n, e1, gf) == pytest.approx(gf)
    assert cubic_budget(12, n, e1, gf) == pytest.approx(gf + (1 - gf) * 0.5**3)
    grid = [cubic_budget(e / 10, n, e1, gf) for e in range(0, 10 * n + 1)]
    assert all(a >= b for a, b in itertools.pairwise(grid))
    assert cubic_budget(n - 1e-3, n, e1, gf) == pytest.approx(gf, abs=1e-9)


@pytest.mark.parametrize(
    "args", [(0, 5, 5, 0.2), (0, 5, 6, 0.2), (0, 10, 2, 0.0), (0, 10, 2, 1.5), (-1, 10, 2, 0.2)]
)
def test_cubic_budget_bad_args_raise(args):
    with pytest.raises(ValueError):
        cubic_budget(*args)


# ---------------------------------------------------------------- scores, masks, read-out


def test_log_prob_grad_matches_autograd():
    g = torch.Generator().manual_seed(0)
    for keep_last in (False, True):
        mask = StepMask(7, keep_last=keep_last)
        mask.scores[:6] = torch.rand(6, generator=g) * 0.9 + 0.05
        masks = mask.sample(16, generator=g)
        s = mask.scores.double().clone().requires_grad_(True)
        m, free = masks.double(), ~mask.forced
        log_p = (m * s.log() + (1 - m) * (1 - s).clamp_min(1e-300).log())[:, free].sum(1)
        rows = torch.stack([torch.autograd.grad(lp, s, retain_graph=True)[0] for lp in log_p])
        torch.testing.assert_close(mask.log_prob_grad(masks).double(), rows, rtol=1e-5, atol=1e-5)
        assert bool((mask.log_prob_grad(masks)[:, mask.forced] == 0).all())


def test_log_prob_grad_boundary_guard():
    mask = StepMask(2, keep_last=False)
    mask.scores[:] = torch.tensor([1.0, 0.0])
    grad = mask.log_prob_grad(torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(grad, torch.tensor([[1.0, -1.0]]))  # exact values of possible outcomes
    assert bool(torch.isfinite(mask.log_prob_grad(torch.tensor([[0.0, 1.0]]))).all())


def test_policy_gradient_zero_at_full_scores_and_needs_two_masks():
    mask = StepMask(6, keep_last=False)
    masks = mask.sample(5, generator=torch.Generator().manual_seed(0))
    assert bool((masks == 1).all())
    assert float(mask.policy_gradient(torch.randn(5), masks).abs().max()) < 1e-12  # 0 up to rounding
    with pytest.raises(ValueError, match="J >= 2"):
        mask.policy_gradient(torch.ones(1), masks[:1])
    with pytest.raises(ValueError, match="masks"):
        mask.policy_gradient(torch.ones(4), masks)
    with pytest.raises(ValueError, match="finite"):
        mask.policy_gradient(torch.tensor([1.0, float("nan")]), masks[:2])


def test_policy_gradient_is_unbiased():
    s = torch.tensor([0.3, 0.6, 0.8], dtype=torch.float64)
    table = torch.tensor([3.0, -1.0, 0.5, 2.0, -2.0, 1.5, 4.0, 0.0], dtype=torch.float64)  # f(m), m as bits

    def cost(m: torch.Tensor) -> torch.Tensor:
        return table[(m.long() * torch.tensor([1, 2, 4])).sum(-1)]

    all_masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    sv = s.clone().requires_grad_(True)
    prob = (all_masks * sv + (1 - all_masks) * (1 - sv)).prod(1)
    (exact,) = torch.autograd.grad((prob * cost(all_masks)).sum(), sv)

    mask = StepMask(3, keep_last=False)
    mask.scores[:] = s.float()
    g = torch.Generator().manual_seed(1)
    draws = mask.sample(4 * 8000, generator=g).view(8000, 4, 3)
    est = torch.stack([mask.policy_gradient(cost(d), d) for d in draws]).double()
    se = est.std(0) / math.sqrt(est.shape[0])
    assert bool(((est.mean(0) - exact).abs() < 4 * se).all()), (est.mean(0), exact, se)


def test_sample_reproducible_and_pinned_steps():
    mask = StepMask(12, init=0.3, keep_last=True, always_keep=[2])
    a = mask.sample(50, generator=torch.Generator().manual_seed(7))
    b = mask.sample(50, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.dtype == torch.float32 and a.shape == (50, 12)
    assert bool((a[:, [2, 11]] == 1).all())
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert mask.always_keep == (2, 11) and mask.n_forced == 2
    mask.step(torch.randn(12, generator=torch.Generator().manual_seed(0)), lr=0.5, budget=4.0)
    assert mask.scores[[2, 11]].tolist() == [1.0, 1.0]
    assert float(mask.scores.sum()) <= 4.0 + 1e-5
    with pytest.raises(ValueError, match="budget"):
        mask.step(torch.zeros(12), lr=0.1, budget=1.0)
    assert StepMask(4, keep_last=False).sample(3).shape == (3, 4)
    assert "keep_last=True" in repr(mask)


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_steps"):
        StepMask(0)
    with pytest.raises(ValueError, match="init"):
        StepMask(5, init=1.5)
    with pytest.raises(ValueError, match="always_keep"):
        StepMask(5, always_keep=[5])
    with pytest.raises(ValueError, match="n_masks"):
        StepMask(5).sample(0)


def test_kept_steps_exact_sorted_and_tie_break():
    mask = StepMask(8, init=0.5, keep_last=False)
    assert mask.kept_steps(3).tolist() == [5, 6, 7]  # all tied: larger step index wins
    mask.scores[:] = torch.tensor([0.9, 0.1, 0.9, 0.2, 0.5, 0.5, 0.0, 0.3])
    assert mask.kept_steps(3).tolist() == [0, 2, 5]
    assert mask.kept_steps(8).tolist() == list(range(8))
    pinned = StepMask(8, keep_last=True)
    pinned.scores[:] = torch.tensor([0.9, 0.1, 0.9, 0.2, 0.5, 0.5, 0.0, 1.0])
    pinned.scores[7] = 0.0  # a pinned step is kept whatever its stored score
    assert pinned.kept_steps(3).tolist() == [0, 2, 7]
    assert pinned.kept_steps(1).tolist() == [7]
    for k in (0, 9, 2.0):
        with pytest.raises(ValueError, match="k"):
            mask.kept_steps(k)
    with pytest.raises(ValueError, match="k"):
        StepMask(8, always_keep=[0]).kept_steps(1)


def test_binarity_and_state_dict_round_trip():
    mask = StepMask(5, keep_last=False)
    mask.scores[:] = torch.tensor([0.95, 0.1, 0.8, 0.0, 0.2])
    out = mask.binarity(2)
    assert out["max_kept_distance_from_1"] == pytest.approx(0.2)
    assert out["max_dropped_distance_from_0"] == pytest.approx(0.2)
    assert mask.binarity(5)["max_dropped_distance_from_0"] == 0.0
    state = mask.state_dict()
    assert list(state) == ["scores"]
    other = StepMask(5, keep_last=False)
    other.load_state_dict(state)
    assert torch.equal(other.scores, mask.scores)
    assert not any(True for _ in mask.parameters())


# ---------------------------------------------------------------- toy policy-gradient problem


def run_toy(seed: int, keep_last: bool, n_steps: int = 10, k: int = 3, iters: int = 1000) -> tuple:
    """cost(m) = sum_t c_t m_t + lam * #dropped with lam > max c: under sum(s) <= k, keep the k cheapest."""
    g = torch.Generator().manual_seed(seed)
    costs = torch.randperm(n_steps, generator=g).double() + 1
    lam = n_steps + 1.0
    mask = StepMask(n_steps, keep_last=keep_last)
    lr0, lr1, shrink = 0.02, 2e-4, 300
    for it in range(iters):
        budget = cubic_budget(it, shrink, 0, k / n_steps) * n_steps
        lr = lr0 * (lr1 / lr0) ** (it / (iters - 1))
        mask_update(mask, lambda m: float((costs * m).sum() + lam * (n_steps - m.sum())), 8, lr, budget, g)
    free = torch.arange(n_steps)[~mask.forced]
    cheapest = free[torch.argsort(costs[free])][: k - mask.n_forced]
    expected = torch.sort(torch.cat([cheapest, torch.nonzero(mask.forced).flatten()])).values
    return mask, expected


@pytest.mark.parametrize("keep_last", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_policy_gradient_learns_cheapest_steps(seed, keep_last):
    mask, expected = run_toy(seed, keep_last)
    assert mask.kept_steps(3).tolist() == expected.tolist()
    assert float(mask.scores.sum()) <= 3 + 1e-5
    assert max(mask.binarity(3).values()) < 0.3


# ---------------------------------------------------------------- masked chain helpers


def test_sample_kept_timestep_uniform_among_kept_and_empty_rows():
    masks = torch.tensor([[1.0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    t = sample_kept_timestep(masks, 3000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (3, 3000) and t.dtype == torch.long
    assert set(t[0].tolist()) == {0, 2, 4}
    counts = torch.bincount(t[0], minlength=6)[[0, 2, 4]].double() / 3000
    torch.testing.assert_close(counts, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.04, rtol=0)
    assert set(t[1].tolist()) == {5} and set(t[2].tolist()) == {1}
    again = sample_kept_timestep(masks, 3000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    assert effective_masks(masks)[1].tolist() == [0, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="masks"):
        sample_kept_timestep(torch.full((2, 3), 0.5), 1)


def ddpm_weight(alpha_bar: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Closed form beta^2 / (2 beta_tilde alpha (1 - alpha_bar)), first step with sigma^2 = beta."""
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    beta_tilde = (1 - prev) / (1 - alpha_bar) * betas
    beta_tilde[0] = betas[0]
    return betas**2 / (2 * beta_tilde * (1 - betas) * (1 - alpha_bar))


def test_elbo_weight_full_chain_equals_ddpm_weight():
    schedule = NoiseSchedule(50)
    t = torch.arange(50)[None]
    w = elbo_weight(schedule, torch.ones(1, 50), t, normalize=False)
    expected = ddpm_weight(schedule.alphas_cumprod, schedule.betas)
    torch.testing.assert_close(w[0].double(), expected, rtol=1e-5, atol=0)
    assert float(elbo_weight(schedule, torch.ones(1, 50), t).mean()) == pytest.approx(1.0, rel=1e-5)


def test_elbo_weight_masked_chain():
    schedule = NoiseSchedule(50)
    steps = uniform_steps(50, 10)
    masks = torch.zeros(2, 50)
    masks[0, steps] = 1
    masks[1, [3, 20, 49]] = 1
    t = torch.arange(50).expand(2, 50)
    w = elbo_weight(schedule, masks, t, normalize=False)
    assert bool(torch.isfinite(w).all()) and bool((w[masks == 1] > 0).all())
    assert bool((w[masks == 0] == 0).all())
    chain = schedule.chain(steps, "masked")  # independent path: DDPM weights of the chain over kept steps
    expected = ddpm_weight(chain.alphas_cumprod, chain.betas)
    torch.testing.assert_close(w[0, steps].double(), expected, rtol=1e-5, atol=0)
    w1 = elbo_weight(schedule, masks, torch.stack([steps[1], torch.tensor(49)]))
    assert w1.shape == (2,) and bool((w1 > 0).all())
    torch.testing.assert_close(loss_weight("elbo", schedule, masks, t), elbo_weight(schedule, masks, t))
    assert bool((loss_weight("simple", schedule, masks, t) == 1).all())
    with pytest.raises(ValueError, match="kind"):
        loss_weight("snr", schedule, masks, t)
    with pytest.raises(ValueError, match="t must"):
        elbo_weight(schedule, masks, torch.tensor([[50], [0]]))


def test_mask_update_diagnostics_and_nonempty_masks():
    seen = []

    def loss_fn(m: torch.Tensor) -> torch.Tensor:
        seen.append(m.clone())
        return m.sum() * 0.1

    mask = StepMask(6, init=0.05, keep_last=False)
    out = mask_update(mask, loss_fn, 16, lr=0.1, budget=2.0, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss_mean", "loss_std", "grad_norm", "scores_sum", "kept_mean"}
    assert len(seen) == 16 and min(float(m.sum()) for m in seen) >= 1
    assert out["scores_sum"] <= 2.0 + 1e-5
    with pytest.raises(ValueError, match="n_masks"):
        mask_update(mask, loss_fn, 1, lr=0.1, budget=2.0)
    with pytest.raises(ValueError, match="finite"):
        mask_update(mask, lambda m: float("nan"), 4, lr=0.1, budget=2.0)


def test_keep_last_keeps_terminal_noise_level():
    """Why keep_last: a read-out of early steps only never reaches pure noise at sampling start."""
    schedule = NoiseSchedule(50)
    full = schedule.full_chain().terminal_alpha_cumprod
    assert full == pytest.approx(3.4e-5, rel=0.02)
    uniform = schedule.chain(uniform_steps(50, 10), "masked")
    assert uniform.terminal_alpha_cumprod == pytest.approx(0.11, rel=0.01)
    early = torch.linspace(1, 0, 50)  # scores favouring the least noisy steps
    free = StepMask(50, keep_last=False)
    free.scores[:] = early
    steps = free.kept_steps(10)
    assert steps.tolist() == list(range(10))
    assert schedule.chain(steps, "masked").terminal_alpha_cumprod > 0.9  # sampling would start near the data
    pinned = StepMask(50, keep_last=True)
    pinned.scores[:49] = early[:49]
    steps = pinned.kept_steps(10)
    assert steps.tolist() == list(range(9)) + [49]
    assert schedule.chain(steps, "masked").terminal_alpha_cumprod <= 1 - float(schedule.betas[-1])
    assert schedule.chain(steps, "respaced").terminal_alpha_cumprod == pytest.approx(full)
