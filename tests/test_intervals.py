"""Paired statistics of the suite: McNemar's exact test, the episode bootstrap, clustered rates.

Hand-computed cases: the numbers in the assertions are worked out in the comments, not taken from
the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from quadpipe.evaluation.intervals import (
    Z95,
    cluster_bootstrap,
    effective_n,
    mcnemar_exact,
    wilson,
)
from quadpipe.evaluation.suite import paired_success


@pytest.mark.parametrize("b, c, p", [
    (1, 8, 2 * (1 + 9) / 512),  # n = 9: P(X <= 1) = (C(9,0) + C(9,1)) / 2^9 = 10 / 512
    (8, 1, 0.0390625),  # two-sided: symmetric in b and c
    (3, 10, 2 * (1 + 13 + 78 + 286) / 8192),  # n = 13: C(13, 0..3)
    (0, 5, 2 / 32),  # the smallest p five discordant pairs can give
    (4, 4, 1.0), (7, 7, 1.0),  # b = c: 2 P(X <= n/2) > 1, capped
    (0, 0, 1.0)])  # no discordant pair: no evidence either way
def test_mcnemar_exact_matches_hand_computed_binomial_tails(b, c, p) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_is_exact_for_many_pairs() -> None:
    # 1000 discordant pairs: integer arithmetic, no overflow or underflow to a wrong 0
    assert 0 < mcnemar_exact(400, 600) < 1e-9
    assert mcnemar_exact(500, 500) == 1.0


def test_cluster_bootstrap_collapses_without_spread_and_is_deterministic() -> None:
    assert cluster_bootstrap(np.full(40, 0.5)) == (0.5, 0.5)
    assert cluster_bootstrap(np.ones(7)) == (1.0, 1.0)
    assert cluster_bootstrap(np.array([])) is None
    v = np.random.default_rng(3).random(50)
    assert cluster_bootstrap(v) == cluster_bootstrap(v.copy())
    assert cluster_bootstrap(v, seed=1) != cluster_bootstrap(v)


def test_cluster_bootstrap_covers_the_mean_and_shrinks_with_episodes() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(25), rng.random(2500)
    lo_s, hi_s = cluster_bootstrap(small)
    lo_l, hi_l = cluster_bootstrap(large)
    assert lo_s < small.mean() < hi_s and lo_l < 0.5 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5  # about sqrt(100) = 10 times narrower
    # the percentile interval of a mean over E values: half-width ~ 1.96 sd / sqrt(E)
    assert (hi_l - lo_l) / 2 == pytest.approx(Z95 * large.std() / np.sqrt(2500), rel=0.1)


def test_cluster_bootstrap_bound_at_zero_reads_zero_not_minus_zero() -> None:
    # A suite's paired differences with three seeds (the fine-tuned pushes run of
    # docs/training-findings.md): each episode's seeds' mean success minus the expert's, in thirds.
    # The resampled means at the 2.5 % quantile are 0 in exact arithmetic; summed in floats they
    # came out as -1.1e-18, which the headline printed as "-0", an interval reaching below 0.
    v = np.zeros(100)
    v[[7, 26, 49, 57]] = 1.0  # the expert fails, every seed walks
    v[[41, 63]] = 2 / 3  # the expert fails, two seeds of three walk
    v[2], v[51] = 1 / 3 - 1, 2 / 3 - 1  # the expert walks, two seeds / one seed fall
    lo, hi = cluster_bootstrap(v)
    assert lo == 0.0 and np.copysign(1.0, lo) == 1.0 and f"{100 * lo:+.0f}" == "+0"
    assert hi == pytest.approx(0.09)


def test_effective_n_counts_episodes_not_seeds_when_seeds_agree() -> None:
    ep = np.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    assert effective_n(np.stack([ep] * 3)) == 8  # three copies of one seed: still 8 trials
    assert effective_n(ep[None]) == 8  # one seed: one trial per episode
    assert effective_n(np.ones((3, 8))) == 24  # p = 1: Korn-Graubard, n_eff = n
    assert effective_n(np.zeros((3, 8))) == 24


def test_effective_n_hand_computed() -> None:
    # per-episode means (1, 0.5, 0.5, 0): p = 0.5, sample variance (0.25 + 0 + 0 + 0.25) / 3
    # = 1/6, Var(p) = 1/6 / 4 = 1/24, n_eff = p (1 - p) / Var(p) = 0.25 * 24 = 6 (in [4, 8])
    assert effective_n(np.array([[1, 1, 0, 0], [1, 0, 1, 0]])) == pytest.approx(6.0)
    # seeds that split every episode 1:1 have no between-episode variance: as good as 2 E
    assert effective_n(np.array([[1, 0, 1, 0], [0, 1, 0, 1]])) == 8


def test_paired_difference_of_equal_counts_is_zero_not_minus_zero() -> None:
    # 282 of 300 seed trials against the expert's 94 of 100 (an imitated default's pushes): the
    # difference is 0, but the mean of the per-episode differences (thirds) summed in floats
    # came out as -7e-18 and the headline printed "-0 pp".
    rng = np.random.default_rng(0)
    expert = np.ones(100, dtype=bool)
    expert[rng.choice(100, 6, replace=False)] = False
    policy = np.ones((3, 100), dtype=bool)
    policy.ravel()[rng.choice(300, 18, replace=False)] = False
    assert (policy.mean(axis=0) - expert).mean() != 0  # what the float mean gave
    _, paired = paired_success(policy, expert, ["seed_0", "seed_1", "seed_2"])
    assert paired["success_diff"] == 0.0 and f"{100 * paired['success_diff']:+.0f}" == "+0"


def test_paired_difference_on_a_hand_built_table() -> None:
    policy = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], dtype=bool)
    expert = np.array([1, 0, 1, 0], dtype=bool)
    # per episode: mean over seeds (1, 0.5, 0, 1) - expert (1, 0, 1, 0) = (0, 0.5, -1, 1)
    pooled, paired = paired_success(policy, expert, ["seed_0", "seed_1"])
    assert paired["success_diff"] == pytest.approx(0.125)  # 0.5 / 4
    assert paired["success_diff"] == pytest.approx(pooled["rate"] - expert.mean())
    lo, hi = paired["success_diff_ci95"]
    assert -1 <= lo < 0.125 < hi <= 1
    # seed 0 succeeds alone on episodes 1 and 3, the expert alone on 2: b = 2, c = 1
    assert paired["per_seed"][0] == {"seed": "seed_0", "policy_only": 2, "expert_only": 1,
                                     "mcnemar_p": 1.0}
    assert paired["per_seed"][1] == {"seed": "seed_1", "policy_only": 1, "expert_only": 1,
                                     "mcnemar_p": 1.0}  # b = c
    assert pooled["successes"] == 5 and pooled["n"] == 8 and pooled["rate"] == 0.625
    assert pooled["effective_n"] == pytest.approx(effective_n(policy))


def test_combined_mcnemar_is_bonferroni_over_seeds_not_the_summed_counts() -> None:
    # 12 episodes; the expert fails only episode 0
    expert = np.ones(12, dtype=bool)
    expert[0] = False
    a = expert.copy()
    a[0], a[1:9] = True, False  # seed a: b = 1, c = 8 -> p = 0.0390625
    b = expert.copy()
    b[0], b[1] = True, False  # seed b: b = 1, c = 1 -> p = 1
    _, paired = paired_success(np.stack([a, b]), expert, ["seed_a", "seed_b"])
    assert [s["mcnemar_p"] for s in paired["per_seed"]] == [0.0390625, 1.0]
    assert paired["mcnemar_p"] == 2 * 0.0390625  # min(1, S * min p)
    # one seed: the combined p is that seed's
    assert paired_success(a[None], expert, ["a"])[1]["mcnemar_p"] == 0.0390625


def test_identical_episodes_collapse_the_difference_to_its_point() -> None:
    # every episode: one of two seeds succeeds, the expert succeeds -> d_i = -0.5 everywhere
    policy = np.tile(np.array([[True], [False]]), (1, 30))
    _, paired = paired_success(policy, np.ones(30, dtype=bool), ["s0", "s1"])
    assert paired["success_diff"] == -0.5 and paired["success_diff_ci95"] == [-0.5, -0.5]
    # the policy always, the expert never: diff 1, interval [1, 1], McNemar 2 / 2^30 per seed
    pooled, paired = paired_success(np.ones((3, 30), dtype=bool), np.zeros(30, dtype=bool),
                                    ["a", "b", "c"])
    assert paired["success_diff"] == 1.0 and paired["success_diff_ci95"] == [1.0, 1.0]
    assert paired["per_seed"][0]["policy_only"] == 30 and paired["per_seed"][0]["expert_only"] == 0
    assert paired["per_seed"][0]["mcnemar_p"] == 2 / 2 ** 30
    assert paired["mcnemar_p"] == 3 * 2 / 2 ** 30
    # 90 of 90: the percentile bootstrap says [1, 1]; the clustered Wilson interval does not
    assert pooled["ci95_bootstrap"] == [1.0, 1.0]
    assert pooled["ci95"] == list(wilson(90, 90)) and pooled["ci95"][0] < 0.97


def test_seeds_that_agree_on_every_episode_count_as_one_seed() -> None:
    ep = np.random.default_rng(5).random(60) < 0.8
    one, _ = paired_success(ep[None], ~ep, ["s"])
    three, _ = paired_success(np.stack([ep] * 3), ~ep, ["a", "b", "c"])
    assert three["ci95_bootstrap"] == one["ci95_bootstrap"]  # same episodes resampled
    assert three["ci95"] == one["ci95"] == list(wilson(int(ep.sum()), 60))
    assert three["rate"] == one["rate"] and three["n"] == 3 * one["n"]
    # the old pooled Wilson over 180 "independent" trials was narrower than the evidence allows
    old = wilson(3 * int(ep.sum()), 180)
    assert old[1] - old[0] < 0.8 * (three["ci95"][1] - three["ci95"][0])


def test_paired_statistics_are_deterministic() -> None:
    rng = np.random.default_rng(11)
    policy, expert = rng.random((3, 80)) < 0.85, rng.random(80) < 0.9
    first = paired_success(policy, expert, ["a", "b", "c"])
    assert paired_success(policy.copy(), expert.copy(), ["a", "b", "c"]) == first
    lo, hi = first[1]["success_diff_ci95"]
    assert lo <= first[1]["success_diff"] <= hi
