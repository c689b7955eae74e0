"""Fine-tuning: the reward and termination by hand, GAE by hand, jobs that resume bit for bit,
and a fine-tuned checkpoint that exports and evaluates like any other."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from quadpipe.config import ExpertConfig
from quadpipe.errors import ConfigError
from quadpipe.learn.finetuning.actor_critic import ActorCritic, extend_horizon
from quadpipe.learn.finetuning.env import RewardConfig, draw_episodes, reward_terms
from quadpipe.learn.finetuning.ppo import PPOConfig, advantages
from quadpipe.learn.finetuning.rollout import Rollout, collect
from quadpipe.learn.finetuning.runner import (
    FinetuneConfig,
    FinetuneError,
    finish,
    load_state,
    run_job,
)
from quadpipe.learn.policy import load_checkpoint
from quadpipe.learn.samples import observe
from quadpipe.sim.physics import PushRanges
from quadpipe.sim.randomize import RandomizeConfig

TINY = FinetuneConfig(iterations=3, iterations_per_job=3, episodes=3, seconds=0.3, randomize=True,
                      critic_hidden=(16,), critic_warmup=1, bc_weight=0.5, bc_decay=0.9,
                      ppo=PPOConfig(epochs=2, minibatches=2))
TIMING = {"collect_s", "update_s", "steps_per_s"}


def _quat(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def test_reward_terms_by_hand() -> None:
    cfg = RewardConfig()
    limit = 33.5
    qpos = np.zeros((2, 19))
    qpos[0, :3], qpos[0, 3:7] = [1.0, 2.0, 0.3], _quat(0.3)
    qpos[1, :3], qpos[1, 3:7] = [0.0, 0.0, 0.3], _quat(3.1)  # heading error across +-pi
    target = np.array([[1.1, 2.0], [0.0, 0.0]])
    heading = np.array([0.0, -3.1])
    u = np.full((2, 12), 3.35)  # 0.1 of the limit
    u_prev = np.zeros((2, 12))
    t = reward_terms(qpos, target, heading, u, u_prev, cfg, limit, 0.001)
    assert t["track"] == pytest.approx([math.exp(-(0.1 / 0.15) ** 2), 1.0])
    e = 2 * math.pi - 6.2  # 3.1 - (-3.1) wrapped
    assert t["heading"] == pytest.approx([0.25 * math.exp(-(0.3 / 0.5) ** 2),
                                          0.25 * math.exp(-(e / 0.5) ** 2)])
    assert t["alive"] == pytest.approx([0.5, 0.5])
    assert t["torque"] == pytest.approx([-0.1 * 0.01] * 2)
    assert t["action_rate"] == pytest.approx([-0.5 * 0.01] * 2)
    # the same change over 4 ms is a quarter the rate: 1/16 the penalty, the rest unchanged
    t4 = reward_terms(qpos, target, heading, u, u_prev, cfg, limit, 0.004)
    assert t4["action_rate"] == pytest.approx([-0.5 * 0.01 / 16] * 2)
    assert t4["torque"] == pytest.approx(t["torque"])


def test_gae_ends_at_a_fall_and_bootstraps_a_time_out() -> None:
    """Episode 0 runs out of time (bootstrapped by last_value), episode 1 falls in block 1."""
    g, lam = 0.9, 0.5
    r = Rollout(obs=np.zeros((3, 2, 1), np.float32), action=np.zeros((3, 2, 12), np.float32),
                mean=np.zeros((3, 2, 12), np.float32), logp=np.zeros((3, 2), np.float32),
                value=np.array([[1.0, 2.0], [0.5, 1.5], [0.25, 0.0]], np.float32),
                reward=np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.0]]), label=None,
                valid=np.array([[1, 1], [1, 1], [1, 0]], bool),
                done=np.array([[0, 0], [0, 1], [0, 0]], bool),
                last_value=np.array([2.0, 9.0], np.float32), terms={}, fell=np.array([0, 1], bool),
                tracking_error=np.zeros(2), steps_per_s=0.0)
    adv, ret = advantages(r, g, lam)
    d2 = 0.5 + g * 2.0 - 0.25
    d1 = 0.3 + g * 0.25 - 0.5
    d0 = 0.1 + g * 0.5 - 1.0
    a2, a1 = d2, d1 + g * lam * d2
    assert adv[:, 0] == pytest.approx([d0 + g * lam * a1, a1, a2])
    f1 = 0.4 - 1.5  # the fall: no value after it
    assert adv[:2, 1] == pytest.approx([0.2 + g * 1.5 - 2.0 + g * lam * f1, f1])
    assert ret[:, 0] == pytest.approx(adv[:, 0] + r.value[:, 0])


def test_a_fall_ends_the_episode_in_the_environment(tiny_policies) -> None:
    """A policy that outputs no torque collapses: the episode is done in the block it fell in,
    with no transition after it and no alive reward past the fall."""
    policy, obs, _ = load_checkpoint(tiny_policies[0])
    with torch.no_grad():
        for p in policy.net.parameters():
            p.zero_()
        policy.out_mean.zero_()
    ac = ActorCritic(policy, (8,), 1e-6)
    expert = ExpertConfig()
    eps = draw_episodes(0, 0, 2, 1.5, (0.2, 0.2), obs.offsets, expert, None)
    r = collect(ac, obs, eps, expert, RewardConfig(), PPOConfig(), torch.Generator().manual_seed(0))
    assert r.fell.all()
    for e in range(2):
        last = np.flatnonzero(r.valid[:, e]).max()
        assert r.done[last, e] and r.done[:, e].sum() == 1
        assert not r.valid[last + 1:, e].any()
        # alive is paid per second up to the fall only
        assert r.terms["alive"][e] == pytest.approx(0.5 * (last + 1) * 0.02, abs=0.5 * 0.021)


def _weights(state):
    return {k: v.clone() for k, v in state["model"].items()}


def _same_run(a, b) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _history(state):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in state["history"]]


@pytest.fixture(scope="module")
def straight(tiny_policies, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "job_0.pt"
    return run_job(tiny_policies[0], out, TINY, 0, 0, progress=False)


def test_fine_tuning_changes_the_actor_and_records_each_iteration(straight, tiny_policies):
    before = load_checkpoint(tiny_policies[0])[0].state_dict()
    after = {k[len("actor."):]: v for k, v in straight["model"].items()
             if k.startswith("actor.")}
    assert any(not torch.equal(before[k], after[k]) for k in before)
    rows = straight["history"]
    assert [h["iteration"] for h in rows] == [1, 2, 3]
    assert [h["actor_trained"] for h in rows] == [0, 1, 1]
    assert rows[1]["bc_weight"] == pytest.approx(0.5 * 0.9)
    for h in rows:
        assert 0 <= h["fall_fraction"] <= 1 and h["tracking_error_m"] > 0 and h["lr"] > 0


def test_a_killed_job_resumes_to_the_same_weights(straight, tiny_policies, tmp_path):
    out = tmp_path / "job_0.pt"
    run_job(tiny_policies[0], out, TINY, 0, 0, progress=False, stop_after=1)
    assert not out.exists()  # killed: only the resume checkpoint is there
    assert load_state(out.with_name(out.name + ".partial") / "resume.pt")["iteration"] == 1
    resumed = run_job(tiny_policies[0], out, TINY, 0, 0, progress=False)
    _same_run(_weights(resumed), _weights(straight))
    assert _history(resumed) == _history(straight)
    assert not out.with_name(out.name + ".partial").exists()


def test_jobs_of_any_size_give_the_same_policy(straight, tiny_policies, tmp_path):
    cfg = dataclasses.replace(TINY, iterations_per_job=2)
    assert cfg.jobs == 2
    first = tmp_path / "job_0.pt"
    run_job(tiny_policies[0], first, cfg, 0, 0, progress=False)
    second = run_job(first, tmp_path / "job_1.pt", cfg, 0, 1, progress=False)
    assert second["iteration"] == 3
    _same_run(_weights(second), _weights(straight))


def test_a_resume_checkpoint_of_other_settings_is_not_used(tiny_policies, tmp_path):
    out = tmp_path / "job_0.pt"
    run_job(tiny_policies[0], out, TINY, 0, 0, progress=False, stop_after=1)
    other = dataclasses.replace(TINY, reward=RewardConfig(track=2.0))
    fresh = run_job(tiny_policies[0], tmp_path / "fresh.pt", other, 0, 0, progress=False)
    got = run_job(tiny_policies[0], out, other, 0, 0, progress=False)
    _same_run(_weights(got), _weights(fresh))


def test_bad_starts_and_settings_are_clear_errors(straight, tiny_policies, tmp_path):
    two = dataclasses.replace(TINY, iterations_per_job=2)
    with pytest.raises(FinetuneError, match="not a quadpipe fine-tuning state"):
        run_job(tiny_policies[0], tmp_path / "job_1.pt", two, 0, 1, progress=False)
    with pytest.raises(FinetuneError, match="beyond finetune.iterations"):
        run_job(tiny_policies[0], tmp_path / "x.pt", TINY, 0, 5, progress=False)
    with pytest.raises(ConfigError, match="finetune.speed"):
        FinetuneConfig(speed=(0.3, 0.1))
    with pytest.raises(ConfigError, match="finetune.reward.trak"):
        FinetuneConfig.from_mapping({"reward": {"trak": 1.0}})


def test_a_fine_tuned_policy_exports_and_evaluates_like_any(straight, tiny_policies, tmp_path):
    state_file = tmp_path / "job_0.pt"
    torch.save(straight, state_file)
    with pytest.raises(FinetuneError, match="seed 1 needs all 3"):
        finish(state_file, tmp_path, TINY, 1)
    path = finish(state_file, tmp_path, TINY, 0)
    policy, obs, ckpt = load_checkpoint(path)
    base, base_obs, _ = load_checkpoint(tiny_policies[0])
    assert obs == base_obs and policy.architecture == base.architecture
    assert ckpt["finetune"]["iterations"] == 3
    assert (tmp_path / "finetune.csv").read_text().count("\n") == 4
    x = torch.randn(5, obs.dim)
    with torch.no_grad():
        assert not torch.equal(policy(x), base(x))
    from quadpipe.evaluation.suite import SuiteConfig, run_condition

    suite = SuiteConfig(episodes=2, seconds=0.5)
    r = run_condition([path], [0], "nominal", suite, baseline=[tiny_policies[0]])
    assert set(r["baseline"]) >= {"policy", "paired", "ratio"}
    assert r["vs_baseline"]["ratio"]["pairs"] <= 2
    from quadpipe.evaluation.headline import headline_markdown, machine
    from quadpipe.evaluation.tables import suite_table

    table = suite_table([r])
    assert "fine-tuned - imitated success, paired (95% CI)" in table.columns
    assert "fine-tuned / imitated error" in headline_markdown([], [r], machine())
    assert "imitated" not in " ".join(suite_table([{k: v for k, v in r.items()
                                                    if k not in ("baseline", "vs_baseline")}]))
    # against itself: no episode differs, every ratio is 1
    same = run_condition([path], [0], "nominal", suite, baseline=[path])
    assert same["vs_baseline"]["success_diff"] == 0.0
    assert same["vs_baseline"]["ratio"]["median"] in (None, 1.0)
    pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is absent")
    import onnxruntime as ort

    from quadpipe.learn.export import export_checkpoint

    onnx = export_checkpoint(path, tmp_path / "ft.onnx")["onnx"]
    sess = ort.InferenceSession(str(onnx))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(got, policy(x).numpy(), atol=1e-4)


def test_randomised_episodes_draw_their_own_physics(tiny_policies):
    _, obs, _ = load_checkpoint(tiny_policies[0])
    expert = ExpertConfig()
    a = draw_episodes(3, 1, 2, 0.5, (0.2, 0.3), obs.offsets, expert, RandomizeConfig())
    b = draw_episodes(3, 1, 2, 0.5, (0.2, 0.3), obs.offsets, expert, RandomizeConfig())
    c = draw_episodes(3, 2, 2, 0.5, (0.2, 0.3), obs.offsets, expert, RandomizeConfig())
    assert np.array_equal(a.target_xy, b.target_xy)  # the same (seed, iteration): the same
    assert not np.array_equal(a.target_xy, c.target_xy)
    assert a.models[0].body_mass.sum() != a.models[1].body_mass.sum()


def test_a_share_of_randomised_episodes_keeps_the_rest_nominal(tiny_policies):
    _, obs, _ = load_checkpoint(tiny_policies[0])
    expert = ExpertConfig()
    nominal = draw_episodes(3, 1, 4, 0.5, (0.2, 0.3), obs.offsets, expert, None)
    half = draw_episodes(3, 1, 4, 0.5, (0.2, 0.3), obs.offsets, expert, RandomizeConfig(),
                         randomized=FinetuneConfig(episodes=4, randomize=0.5).randomized)
    full = draw_episodes(3, 1, 4, 0.5, (0.2, 0.3), obs.offsets, expert, RandomizeConfig())
    mass = [m.body_mass.sum() for m in half.models]
    assert mass[2] == mass[3] == nominal.models[0].body_mass.sum() != mass[0] != mass[1]
    assert mass[:2] == [m.body_mass.sum() for m in full.models[:2]]  # their own streams
    assert half.pushes[:2] == full.pushes[:2] and half.pushes[2:] == [[], []]
    assert np.array_equal(half.target_xy, nominal.target_xy)  # the same paths either way
    assert FinetuneConfig(randomize=True).randomize == 1.0
    with pytest.raises(ConfigError, match="finetune.randomize must be a share"):
        FinetuneConfig(randomize=1.5)
    with pytest.raises(ConfigError, match="finetune.pieces"):
        FinetuneConfig(pieces=(0.0, 0.0, 0.0))


def test_kicked_episodes_get_kicks_from_their_own_ranges_on_nominal_physics(tiny_policies):
    _, obs, _ = load_checkpoint(tiny_policies[0])
    expert = ExpertConfig()
    kicks = PushRanges(interval_s=(0.4, 0.6), velocity=(0.5, 1.0))
    cfg = FinetuneConfig(episodes=4, randomize=0.25, kicked=0.5, kicked_from=2, kicks=kicks)
    assert [cfg.kicked_at(i) for i in (0, 1, 2, 9)] == [0, 0, 2, 2]  # from iteration 2 on
    nominal = draw_episodes(3, 2, 4, 1.5, (0.2, 0.3), obs.offsets, expert, None)
    mixed = draw_episodes(3, 2, 4, 1.5, (0.2, 0.3), obs.offsets, expert, RandomizeConfig(),
                          randomized=cfg.randomized, kicked=cfg.kicked_at(2), kicks=kicks)
    alone = draw_episodes(3, 2, 4, 1.5, (0.2, 0.3), obs.offsets, expert, None, kicked=3,
                          kicks=kicks)
    mass = [m.body_mass.sum() for m in mixed.models]
    assert mass[1] == mass[2] == mass[3] == nominal.models[0].body_mass.sum() != mass[0]
    assert mixed.pushes[3] == []
    for plan in mixed.pushes[1:3]:  # kicks every 0.4-0.6 s within 1.5 s, 0.5-1.0 m/s
        steps = np.array([0] + [k for k, _ in plan])
        assert len(plan) >= 2 and np.all(np.diff(steps) >= round(0.4 / expert.dt)) and \
            np.all(np.diff(steps) <= round(0.6 / expert.dt))
        assert all(0.5 <= np.linalg.norm(dv) <= 1.0 and dv[2] == 0 for _, dv in plan)
    # episode e's kicks come from its own stream, whatever the shares around it
    assert str(alone.pushes[1:3]) == str(mixed.pushes[1:3]) and alone.pushes[0] != []
    assert np.array_equal(mixed.target_xy, nominal.target_xy)
    with pytest.raises(ConfigError, match="finetune.kicked must be a share"):
        FinetuneConfig(randomize=0.5, kicked=0.75)
    # all but the randomised ones
    assert FinetuneConfig(episodes=32, randomize=0.3, kicked=0.7).kicked_at(0) == 32 - 10
    with pytest.raises(ConfigError, match="finetune.kicked_from must be >= 0"):
        FinetuneConfig(kicked=0.5, kicked_from=-1)
    with pytest.raises(ConfigError, match="finetune.kicks.velocity"):
        FinetuneConfig.from_mapping({"kicks": {"velocity": [1.0, 0.5]}})


def test_widening_the_input_scale_keeps_the_policy_and_its_outputs(tiny_policies):
    policy, _, _ = load_checkpoint(tiny_policies[0])
    ac = ActorCritic(policy, (8,), 0.2)
    old = policy.in_std.clone()
    g = torch.Generator().manual_seed(0)
    # inputs far outside the imitation data on some columns, as off the path
    x = policy.in_mean + old * torch.randn(64, policy.in_dim, generator=g) * 30.0
    with torch.no_grad():
        before = ac.mean(x)
    spread = old * torch.where(torch.arange(policy.in_dim) % 3 == 0, 10.0, 0.5)
    factor = ac.widen_input_scale(spread)
    with torch.no_grad():
        after = ac.mean(x)
        z = ac.actor.normalise_input(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    wide = torch.arange(policy.in_dim) % 3 == 0
    torch.testing.assert_close(factor[wide], torch.full_like(factor[wide], 10.0))
    assert torch.all(factor[~wide] == 1.0)  # never narrowed
    assert z[:, wide].abs().max() < 0.2 * ((x - policy.in_mean) / old)[:, wide].abs().max()
    with pytest.raises(ConfigError, match="finetune.ppo.kl_of"):
        FinetuneConfig.from_mapping({"ppo": {"kl_of": "max"}})


def test_a_longer_horizon_starts_as_the_imitated_policy_and_fine_tunes(tiny_policies,
                                                                      tmp_path):
    policy, obs, _ = load_checkpoint(tiny_policies[0])
    longer, new_obs, fresh = extend_horizon(policy, obs, 2 * obs.horizon)
    assert new_obs.num_waypoints == 2 * obs.num_waypoints and longer.in_dim == new_obs.dim
    assert int(fresh.sum()) == 3 * obs.num_waypoints
    rng = np.random.default_rng(0)
    qpos = np.r_[0.1, -0.2, 0.3, _quat(0.4), rng.normal(size=12) * 0.1][None].repeat(4, 0)
    qvel = rng.normal(size=(4, 18)) * 0.1
    future = rng.normal(size=(4, new_obs.num_waypoints, 3))
    phase = rng.uniform(0.0, 6.0, 4)
    near = torch.from_numpy(observe(qpos, qvel, future[:, :obs.num_waypoints], obs, phase))
    far = torch.from_numpy(observe(qpos, qvel, future, new_obs, phase))
    with torch.no_grad():  # the same torques: the new waypoints start with zero weights
        torch.testing.assert_close(longer(far.float()), policy(near.float()))
    with pytest.raises(ConfigError, match="finetune.horizon"):
        extend_horizon(policy, obs, obs.horizon + 1)
    cfg = dataclasses.replace(TINY, horizon=round(2 * obs.horizon * obs.dt * 1e3))  # in ms
    state = run_job(tiny_policies[0], tmp_path / "job_0.pt", cfg, 0, 0, progress=False)
    tuned, tuned_obs, _ = load_checkpoint(finish(tmp_path / "job_0.pt", tmp_path, cfg, 0))
    assert tuned_obs == new_obs and tuned.in_dim == new_obs.dim
    assert state["iteration"] == cfg.iterations


def test_job_settings_written_as_json_keep_small_numbers(tmp_path):
    """json.dumps writes 1e-05, which YAML 1.1 reads as a string: the settings stay numbers."""
    import json

    from quadpipe.cli.main import load_config

    f = tmp_path / "settings.json"
    f.write_text(json.dumps({"finetune": {"ppo": {"lr": 1e-5}}}))
    cfg = FinetuneConfig.from_mapping(load_config(str(f))["finetune"])
    assert cfg.ppo.lr == 1e-5
    f.write_text("finetune:\n  ppo: {lr: 1.0e-5}\n")  # YAML still reads as before
    assert load_config(str(f))["finetune"]["ppo"]["lr"] == 1e-5


@pytest.mark.slow
def test_a_sigkilled_cli_job_resumes_to_the_weights_of_a_straight_run(straight, tiny_policies,
                                                                      tmp_path):
    """`quadpipe finetune` killed with SIGKILL during its second iteration, then run again."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"finetune": {
        **{k: v for k, v in dataclasses.asdict(TINY).items() if k not in ("ppo", "reward")},
        "ppo": dataclasses.asdict(TINY.ppo), "reward": dataclasses.asdict(TINY.reward)},
        "train": {"seed": 0}}))
    out = tmp_path / "job_0.pt"
    resume = out.with_name(out.name + ".partial") / "resume.pt"
    cmd = [sys.executable, "-m", "quadpipe", "finetune", "--start", str(tiny_policies[0]),
           "--job", "0", "--out", str(out), "--config", str(settings)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not resume.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and load_state(resume)["iteration"] >= 1
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming after iteration" in done.stderr
    resumed = load_state(out)
    _same_run(_weights(resumed), _weights(straight))
    assert _history(resumed) == _history(straight)
