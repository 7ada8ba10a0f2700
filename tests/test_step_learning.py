import copy

import numpy as np
import pytest
import torch

from tsimpute import Imputer
from tsimpute.diffusion.samplers import sample_ddpm
from tsimpute.diffusion.schedules import NoiseSchedule, uniform_steps
from tsimpute.step_learning import ensemble_crps

from .conftest import TINY

LEARN = {**TINY, "epochs": 16, "batch_size": 4, "n_masks": 4, "chain": "respaced"}


@pytest.fixture(scope="module")
def joint(sinusoids):
    X, _ = sinusoids
    return Imputer(step_selection="learned", target_steps=5, random_state=0, **LEARN).fit(X)


def test_joint_fit_keeps_exactly_target_steps_with_near_binary_scores(joint):
    assert joint.learned_steps_.shape == (5,)
    assert np.all(np.diff(joint.learned_steps_) > 0)
    assert joint.learned_steps_[-1] == 49  # the pure-noise step stays reachable
    assert joint.step_scores_.shape == (50,)
    assert np.array_equal(joint.steps_, joint.learned_steps_)
    s = joint.step_scores_
    assert np.minimum(s, 1 - s).max() < 0.05, s  # every score ended within 0.05 of 0 or 1
    assert s.sum() <= 5 + 1e-4
    assert set(joint.mask_binarity_) == {"max_kept_distance_from_1", "max_dropped_distance_from_0"}
    assert joint.mask_binarity_["max_dropped_distance_from_0"] < 0.05


def test_learned_sampler_calls_the_network_once_per_kept_step(joint, sinusoids):
    X, _ = sinusoids
    imp = copy.deepcopy(joint).set_params(inference_batch_size=100_000)  # one sampling batch
    assert imp.sample(X, return_info=True)[1].nfe == 5
    assert imp.set_params(step_selection="all").sample(X, return_info=True)[1].nfe == 50


def test_joint_fit_is_reproducible(joint, sinusoids):
    X, _ = sinusoids
    again = Imputer(step_selection="learned", target_steps=5, random_state=0, **LEARN).fit(X)
    assert np.array_equal(again.learned_steps_, joint.learned_steps_)
    assert np.array_equal(again.step_scores_, joint.step_scores_)


@pytest.mark.parametrize("options", [
    {"chain": "masked", "mask_weight": "elbo"},
    {"mask_objective": "imputation", "chain": "masked"},
])
def test_mask_options_fit(sinusoids, options):
    X, _ = sinusoids
    imp = Imputer(step_selection="learned", target_steps=4, random_state=1, **{**LEARN, "epochs": 4, **options})
    out = imp.fit(X).transform(X)
    assert imp.learned_steps_.shape == (4,) and not out.isna().any().any()


def test_learn_steps_from_pretrained_frozen_and_finetuned(tiny_imputer, sinusoids):
    X, _ = sinusoids
    frozen = copy.deepcopy(tiny_imputer)
    before = {k: v.clone() for k, v in frozen.model_.state_dict().items()}
    assert frozen.learn_steps(X, target_steps=6, epochs=1) is frozen
    assert frozen.learned_steps_.shape == (6,) and frozen.step_selection == "learned"
    for k, v in frozen.model_.state_dict().items():
        assert torch.equal(v, before[k]), k
    frozen.transform(X)
    tuned = copy.deepcopy(tiny_imputer).learn_steps(X, target_steps=6, epochs=1, finetune=True)
    changed = any(not torch.equal(v, before[k]) for k, v in tuned.model_.state_dict().items())
    assert changed and tuned.learned_steps_.shape == (6,)
    with pytest.raises(ValueError, match="target_steps"):
        copy.deepcopy(tiny_imputer).learn_steps(X, target_steps=0)


def test_learned_steps_survive_save_load(joint, sinusoids, tmp_path):
    X, _ = sinusoids
    joint.save(tmp_path / "m.pt")
    loaded = Imputer.load(tmp_path / "m.pt")
    assert np.array_equal(loaded.learned_steps_, joint.learned_steps_)
    np.testing.assert_array_equal(loaded.transform(X).to_numpy(), joint.transform(X).to_numpy())


def test_every_step_kept_masked_and_respaced_sample_the_full_chain():
    sched = NoiseSchedule(50)

    def eps(x, t):
        return torch.tanh(x + 0.02 * t)

    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    full = sample_ddpm(eps, x.clone(), sched.full_chain(), generator=torch.Generator().manual_seed(1))
    for semantics in ("masked", "respaced"):
        got = sample_ddpm(eps, x.clone(), sched.chain(torch.arange(50), semantics),
                          generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(got, full, rtol=1e-12, atol=1e-12)


def test_masked_chain_start_matches_the_marginal_of_standardised_data():
    # Sampling starts from N(0, I). Under the masked chain the terminal signal level is not ~0
    # (10 uniform steps: alpha_bar = 0.11), but for standardised data (mean 0, variance 1 per feature,
    # which the Imputer guarantees) the marginal q(x_T) = sqrt(a) x0 + sqrt(1 - a) eps still has
    # mean 0 and variance 1: the start matches the first two moments whatever steps are kept.
    sched = NoiseSchedule(50)
    a = sched.chain(uniform_steps(50, 10), "masked").terminal_alpha_cumprod
    assert a == pytest.approx(0.11, abs=0.01)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(200_000, generator=g) ** 3
    x0 = (x0 - x0.mean()) / x0.std()  # standardised, non-Gaussian
    x_t = a**0.5 * x0 + (1 - a) ** 0.5 * torch.randn(x0.shape, generator=g)
    assert float(x_t.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(x_t.var()) == pytest.approx(1.0, abs=0.01)


def test_ensemble_crps_matches_properscoring():
    import properscoring

    g = np.random.default_rng(0)
    samples, target = g.normal(size=(6, 3, 4)), g.normal(size=(3, 4))
    mask = (g.random((3, 4)) < 0.6).astype(float)
    expected = properscoring.crps_ensemble(target, np.moveaxis(samples, 0, -1))[mask == 1].mean()
    got = ensemble_crps(torch.tensor(samples), torch.tensor(target), torch.tensor(mask), fair=False)
    assert got == pytest.approx(expected, rel=1e-9)
    # the fair score only reweights the spread term: n^2 -> n (n - 1)
    fair = ensemble_crps(torch.tensor(samples), torch.tensor(target), torch.tensor(mask))
    err = np.abs(samples - target).mean(0)[mask == 1].mean()
    assert fair - err == pytest.approx((got - err) * 6 / 5, rel=1e-9)


@pytest.mark.parametrize("n", [2, 4])
def test_fair_ensemble_crps_prefers_the_true_spread_and_the_plain_one_a_narrow_spread(n):
    # truth ~ N(0, 1) per entry; ensembles of n samples of N(0, s^2): the fair CRPS is lowest at s = 1, the
    # plain ensemble CRPS at s = sqrt(a / (2 - a)), a = ((n - 1) / n)^2 (0.63 for n = 4, 0.38 for n = 2)
    g = torch.Generator().manual_seed(0)
    y = torch.randn(400_000, generator=g, dtype=torch.float64)
    z = torch.randn(n, 400_000, generator=g, dtype=torch.float64)
    ones = torch.ones_like(y)
    spreads = [0.3, 0.45, 0.63, 0.8, 1.0, 1.25, 1.6]
    fair = [ensemble_crps(s * z, y, ones) for s in spreads]
    plain = [ensemble_crps(s * z, y, ones, fair=False) for s in spreads]
    assert spreads[int(np.argmin(fair))] == 1.0
    a = ((n - 1) / n) ** 2
    best_plain = spreads[int(np.argmin(plain))]
    assert best_plain == min(spreads, key=lambda s: abs(s - (a / (2 - a)) ** 0.5)) < 0.7
    with pytest.raises(ValueError, match="at least 2 samples"):
        ensemble_crps(z[:1], y, ones)
