"""Training on a tiny real dataset: the loss falls, checkpoints reload exactly, sane features."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_EXPERT

from quadpipe.cli import main
from quadpipe.config import steps_in
from quadpipe.data import dataset
from quadpipe.errors import QuadpipeError
from quadpipe.learn.history import write_history
from quadpipe.learn.imitation.epochs import build_policy
from quadpipe.learn.imitation.prepare import load_arrays, prepare
from quadpipe.learn.imitation.train import train
from quadpipe.learn.imitation.train_config import TrainConfig
from quadpipe.learn.policy import Policy, load_checkpoint, save_checkpoint
from quadpipe.learn.samples import ObsConfig, observe
from quadpipe.sim.state import quat_mul, quat_to_rotvec, rotate_xy, states_from, yaw

# The tiny shard's trajectories are 0.4-1.2 s long: a 0.2 s horizon leaves samples in each.
# No noise augmentation here, so the training loss is the plain imitation loss.
TINY_TRAIN = TrainConfig(epochs=4, lr_decay_epoch=4, sample_stride=5, hidden=(64, 64, 32),
                         batch_size=64, device="cpu", horizon=200, waypoint_every=40,
                         noise_q=0.0, noise_qd=0.0, noise_base=0.0, dagger_rounds=0)
TINY_OBS = TINY_TRAIN.obs_at(TINY_EXPERT.dt)  # the tiny shard's physics
TINY_STRIDE = steps_in(TINY_TRAIN.sample_stride, TINY_EXPERT.dt)


@pytest.fixture(scope="module")
def trained(tiny_shard, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    return out, train(tiny_shard, out, TINY_TRAIN, progress=False)


def test_loss_decreases_and_outputs_written(trained) -> None:
    out, summary = trained
    hist = summary["history"]
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert np.isfinite(summary["best_valid_loss"])
    for name in ("best.pt", "last.pt", "history.csv", "loss.png"):
        assert (out / name).stat().st_size > 0
    with (out / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["lr"]) == pytest.approx(1e-4)  # x0.1 from lr_decay_epoch


def test_checkpoint_is_self_contained(trained, tiny_shard) -> None:
    out, _ = trained
    policy, obs, ckpt = load_checkpoint(out / "last.pt")
    assert obs == TINY_OBS and tuple(ckpt["train_config"]["hidden"]) == (64, 64, 32)
    x, _ = load_arrays(out / "samples", dataset.VALID)
    xb = torch.from_numpy(np.array(x[:50]))
    save_checkpoint(out / "again.pt", policy, obs, TINY_TRAIN)
    again, _, _ = load_checkpoint(out / "again.pt")
    with torch.inference_mode():
        assert torch.equal(policy(xb), again(xb))


def test_same_seed_same_model(tiny_shard, tmp_path) -> None:
    import dataclasses

    cfg = dataclasses.replace(TINY_TRAIN, epochs=1, noise_q=0.05, noise_qd=0.5, noise_base=0.5,
                              dagger_rounds=1, dagger_episodes=3, dagger_seconds=0.3,
                              dagger_epochs=1, dagger_expert_share=0.4)  # 1 expert, 2 policy
    train(tiny_shard, tmp_path / "a", cfg, sample_dir=tmp_path / "s", progress=False)
    train(tiny_shard, tmp_path / "b", cfg, sample_dir=tmp_path / "s", progress=False)
    a, _, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    b, _, _ = load_checkpoint(tmp_path / "b" / "last.pt")
    for (_, ta), (_, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(ta, tb)


def test_normalisation_round_trips(trained, tiny_shard) -> None:
    out, _ = trained
    meta = prepare(tiny_shard, out / "samples", TINY_OBS,
                   TINY_STRIDE)
    x, y = load_arrays(out / "samples", dataset.TRAIN)
    np.testing.assert_allclose(meta["X_mean"], x.mean(0, dtype=np.float64), atol=1e-4)
    np.testing.assert_allclose(meta["Y_std"], y.std(0, dtype=np.float64), rtol=1e-3)
    policy = Policy(x.shape[1], 12, (16, 16, 8))
    policy.set_normalisation(meta["X_mean"], meta["X_std"], meta["Y_mean"], meta["Y_std"])
    yt = torch.from_numpy(np.array(y[:100]))
    z = policy.normalise_output(yt)
    assert torch.allclose(policy.denormalise_output(z), yt, atol=1e-4)
    assert abs(float(z.mean())) < 1.0
    zx = policy.normalise_input(torch.from_numpy(np.array(x)))
    keep = np.asarray(meta["X_std"]) > 1e-6  # constant columns (x, y in heading frame) stay 0
    assert torch.allclose(zx.std(0)[keep], torch.ones(int(keep.sum())), atol=1e-2)


def test_an_input_std_floor_widens_only_the_narrow_columns(trained, tiny_shard) -> None:
    out, _ = trained
    meta = prepare(tiny_shard, out / "samples", TINY_OBS,
                   TINY_STRIDE)
    plain = build_policy(TINY_TRAIN, meta)
    floored = build_policy(dataclasses.replace(TINY_TRAIN, input_std_floor=0.05), meta)
    std = np.asarray(meta["X_std"], dtype=np.float64)
    narrow, constant = (std > 1e-6) & (std < 0.05), std <= 1e-6
    assert narrow.any() and constant.any()  # e.g. the base height; x, y in the heading frame
    assert torch.all(floored.in_std[torch.from_numpy(narrow)] == 0.05)
    assert torch.equal(floored.in_std[torch.from_numpy(~narrow)],
                       plain.in_std[torch.from_numpy(~narrow)])  # wide and constant: as before
    assert torch.equal(plain.in_std, torch.as_tensor(np.where(constant, 1.0, std),
                                                     dtype=torch.float32))


def test_split_is_by_trajectory(trained, tiny_shard) -> None:
    out, summary = trained
    with dataset.open_file(tiny_shard) as f:
        names = dataset.trajectory_names(f)
        splits = dataset.split_of(f, names)
        lengths = [int(f[n].attrs["num_timesteps"]) for n in names]
    expected = sum(len(range(0, n - TINY_OBS.horizon, TINY_STRIDE))
                   for n, s in zip(lengths, splits, strict=True) if s == "valid")
    assert summary["valid_samples"] == expected > 0


def test_heading_frame_is_invariant_to_where_and_which_way(tiny_shard) -> None:
    """The same motion rotated and moved in the world gives the same heading-frame observation."""
    with dataset.open_file(tiny_shard) as f:
        g = f[dataset.trajectory_names(f)[0]]
        qpos, qvel = g["qpos"][()].astype(float), g["qvel"][()].astype(float)
    obs = ObsConfig()
    t = np.arange(0, 48, 6)  # the shortest trajectory: 100 steps
    fut = qpos[t[:, None] + obs.offsets, :3]
    a = observe(qpos[t], qvel[t], fut, obs)
    ang, shift = 1.1, np.array([3.0, -2.0, 0.0])
    q2, v2 = qpos.copy(), qvel.copy()
    q2[:, :3] = rotate_xy(qpos[:, :3], np.full(len(q2), ang)) + shift
    half = np.array([np.cos(ang / 2), 0, 0, np.sin(ang / 2)])
    q2[:, 3:7] = quat_mul(np.broadcast_to(half, (len(q2), 4)), qpos[:, 3:7])
    v2[:, :3] = rotate_xy(qvel[:, :3], np.full(len(v2), ang))
    b = observe(q2[t], v2[t], q2[t[:, None] + obs.offsets, :3], obs)
    np.testing.assert_allclose(a, b, atol=1e-6)  # float32 quaternions in the file


def _observe_by_definition(qpos, qvel, future, obs, phase):
    """The observation composed from sim.state's functions as they return their arrays (what
    `observe` writes in place for speed)."""
    state = states_from(qpos, qvel)
    rel = future - qpos[:, None, 0:3]
    if obs.frame == "heading":
        heading = yaw(qpos[:, 3:7])
        half = -0.5 * heading
        unyaw = np.stack([np.cos(half), np.zeros_like(half), np.zeros_like(half), np.sin(half)],
                         axis=-1)
        state[:, 0:2] = 0.0
        state[:, 3:6] = quat_to_rotvec(quat_mul(unyaw, qpos[:, 3:7]))
        state[:, 6:9] = rotate_xy(state[:, 6:9], -heading)
        rel = rotate_xy(rel, -heading)
    parts = [state, rel.reshape(len(qpos), -1)]
    if obs.gait_clock:
        clock = np.stack([np.sin(phase), np.cos(phase)], axis=-1)
        parts.append(np.where(np.isnan(phase)[:, None], 0.0, clock))
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("frame", ["heading", "world"])
def test_observe_is_its_definition_bit_for_bit(frame) -> None:
    """Every bit, signed zeros included, on tilted, level, upright and sign-flipped quaternions:
    a closed loop's observations are the training samples' (both call `observe`), and a policy
    evaluated before the per-step fast path walks the same after it."""
    rng = np.random.default_rng(7)
    obs = ObsConfig(horizon=250, waypoint_every=50, gait_clock=True, frame=frame, dt=0.004)
    for trial in range(60):
        n = int(rng.integers(1, 40))
        qpos, qvel = rng.normal(size=(n, 19)), rng.normal(size=(n, 18))
        q = rng.normal(size=(n, 4))
        q[: n // 3, 1:3] = 0.0  # pure yaw: the tilt's zero terms decide signed zeros
        q[n // 3: n // 2] = [1.0, 0.0, 0.0, 0.0]
        q = -q if trial % 2 else q
        qpos[:, 3:7] = q / np.linalg.norm(q, axis=1, keepdims=True)
        future = rng.normal(size=(n, obs.num_waypoints, 3))
        phase = np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n))
        want = _observe_by_definition(qpos, qvel, future, obs, phase)
        got = observe(qpos, qvel, future, obs, phase)
        assert got.shape == (n, obs.dim)
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


def test_cli_train_and_bad_config(tiny_shard, tmp_path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("train:\n  epochs: 1\n  sample_stride: 20\n  hidden: [32, 32, 16]\n"
                   "  horizon: 200\n  waypoint_every: 40\n  dagger_rounds: 0\n")
    assert main(["train", "--dataset", str(tiny_shard), "--out-dir", str(tmp_path / "t"),
                 "--config", str(cfg)]) == 0
    assert (tmp_path / "t" / "best.pt").exists()
    assert main(["prepare", "--dataset", str(tiny_shard), "--out", str(tmp_path / "p"),
                 "--config", str(cfg)]) == 0
    assert np.load(tmp_path / "p" / "train_X.npy", mmap_mode="r").shape[1] == 36 + 15 + 2
    cfg.write_text("train:\n  epoch: 1\n")
    assert main(["train", "--dataset", str(tiny_shard), "--out-dir", str(tmp_path / "u"),
                 "--config", str(cfg)]) == 2
    with pytest.raises(QuadpipeError, match="no such dataset"):
        train(tmp_path / "missing.h5", tmp_path / "v", TINY_TRAIN)


def test_joint_noise_relabels_like_the_expert(tiny_shard) -> None:
    """A perturbed sample's label is the expert PD torque at the perturbed joint state."""
    import dataclasses

    from quadpipe.config import expert_from_json
    from quadpipe.learn.imitation.noise import JointNoise
    from quadpipe.sim.expert import references

    with dataset.open_file(tiny_shard) as f:
        exp = expert_from_json(f.attrs["config_json"])
        g = f[dataset.trajectory_names(f)[0]]
        qpos, qvel = g["qpos"][()].astype(float), g["qvel"][()].astype(float)
        refs = references(g["command_sequence"][()], exp)
    obs = ObsConfig()
    t = np.arange(10, 48, 2)
    x = observe(qpos[t], qvel[t], qpos[t[:, None] + obs.offsets, :3], obs)
    kp, kd = np.tile(exp.kp, 4), np.tile(exp.kd, 4)
    y = np.clip(kp * (refs[t] - qpos[t, 7:]) - kd * qvel[t, 6:], -33.5, 33.5)
    gains = {"kp": kp.tolist(), "kd": kd.tolist(), "torque_limit": exp.torque_limit}
    cfg = dataclasses.replace(TINY_TRAIN, noise_q=0.05, noise_qd=0.5)
    xn, yn = JointNoise(cfg, gains, torch.device("cpu"))(torch.tensor(x), torch.tensor(y))
    xn, yn = xn.numpy(), yn.numpy()
    q, qd = xn[:, 12:36:2], xn[:, 13:36:2]
    assert np.abs(q - qpos[t, 7:]).max() > 0.01  # really perturbed
    expected = np.clip(kp * (refs[t] - q) - kd * qd, -33.5, 33.5)
    np.testing.assert_allclose(yn, expected, atol=1e-6)


def test_the_controllers_functional_policy_is_bit_identical() -> None:
    """The closed loop's fast forward pass gives exactly Policy.forward's torques."""
    import torch

    from quadpipe.learn.controller import functional
    from quadpipe.learn.policy import Policy

    torch.manual_seed(3)
    policy = Policy(47, 12, (64, 32, 16))
    policy.set_normalisation(torch.randn(47), torch.rand(47) + 0.5, torch.randn(12),
                             torch.rand(12) + 0.5)
    x = torch.randn(33, 47) * 3
    with torch.inference_mode():
        assert torch.equal(functional(policy.eval())(x), policy(x))


def test_adam_and_clipping_of_learn_optimizers_give_torchs_bits() -> None:
    """learn.optimizers' Adam and AdamW and its gradient clipping step the same weights as
    torch.optim's per-tensor loop and its multi-tensor path with torch's clipping: two parameter
    groups, one without gradients for the first steps (the actor during the critic's warm-up, so
    the groups' step counts differ), a learning rate changed halfway, and a resume from a state
    saved by torch or by learn.optimizers, either way (a torch optimizer keeping its own
    kernels). A mutation of the update's order or of the clipping's epsilon fails it."""
    import copy

    from quadpipe.learn import optimizers

    def train(make, steps, start=None, mine=True):
        """Weights and optimizer state after `steps` steps (from `start` if given)."""
        torch.manual_seed(5)
        net = torch.nn.Sequential(torch.nn.Linear(9, 32), torch.nn.LayerNorm(32),
                                  torch.nn.ReLU(), torch.nn.Linear(32, 4))
        late = torch.nn.Linear(9, 4)
        opt = make([{"params": list(net.parameters()), "lr": 1e-3},
                    {"params": list(late.parameters()), "lr": 1e-2}])
        gen = torch.Generator().manual_seed(6)
        first = 0
        if start is not None:
            net.load_state_dict(start[0][0])
            late.load_state_dict(start[0][1])
            kernels = [g.get("foreach") for g in opt.param_groups]
            optimizers.load(opt, copy.deepcopy(start[1]))
            assert [g.get("foreach") for g in opt.param_groups] == kernels
            gen.set_state(start[2])
            first = start[3]
        clip = optimizers.clip_grad_norm_ if mine else torch.nn.utils.clip_grad_norm_
        for k in range(first, steps):
            if k == 12:
                opt.param_groups[0]["lr"] = 3e-4
            x, y = torch.randn(16, 9, generator=gen), torch.randn(16, 4, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss = ((net(x) - y) ** 2).mean()
            if k >= 5:
                loss = loss + ((late(x) - y) ** 2).mean()
            loss.backward()
            clip(list(net.parameters()), 0.5)
            clip(list(late.parameters()), 0.5)
            opt.step()
        return (copy.deepcopy(net.state_dict()), copy.deepcopy(late.state_dict())), \
            copy.deepcopy(opt.state_dict()), gen.get_state(), steps

    def flat(state):
        return torch.cat([v.flatten() for part in state[0] for v in part.values()])

    cpu = torch.device("cpu")
    for decoupled, wd in ((True, 1e-2), (False, 0.0), (False, 1e-3)):
        torch_kind = torch.optim.AdamW if decoupled else torch.optim.Adam

        def theirs(groups, foreach, kind=torch_kind, wd=wd):
            return kind(groups, lr=1e-3, weight_decay=wd, foreach=foreach)

        def mine(groups, decoupled=decoupled, wd=wd):
            return optimizers.make(groups, cpu, lr=1e-3, weight_decay=wd, decoupled=decoupled)

        loop = train(lambda g: theirs(g, False), 30, mine=False)
        assert isinstance(mine([torch.zeros(1)]), optimizers.Adam)
        assert torch.equal(flat(train(lambda g: theirs(g, True), 30, mine=False)), flat(loop))
        ours = train(mine, 30)
        assert torch.equal(flat(ours), flat(loop))
        assert ours[1]["state"].keys() == loop[1]["state"].keys()
        for i, s in loop[1]["state"].items():
            for key in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(ours[1]["state"][i][key], s[key])
        # resumed halfway, from a state the other side saved
        assert torch.equal(flat(train(mine, 30, start=train(lambda g: theirs(g, False), 15,
                                                             mine=False))), flat(loop))
        for foreach in (True, False):  # a torch optimizer keeps the kernels it was built with
            assert torch.equal(flat(train(lambda g, f=foreach: theirs(g, f), 30, mine=False,
                                          start=train(mine, 15))), flat(loop))


def test_prepared_samples_survive_a_move_and_a_reprepare_under_a_reader(tiny_shard, tmp_path):
    """results/ moved as a whole (mtimes kept) is not prepared again; preparing again while a
    training job has the arrays memory-mapped replaces them beside it, so the reader keeps its
    old arrays (rewriting them in place killed such readers with SIGBUS)."""
    import shutil

    first = tmp_path / "a"
    first.mkdir()
    shutil.copy2(tiny_shard, first / "dataset.h5")
    meta = prepare(first / "dataset.h5", first / "samples", TINY_OBS, 10)
    moved = tmp_path / "b"
    shutil.copytree(first, moved, copy_function=shutil.copy2)
    before = {p.name: p.stat().st_mtime_ns for p in (moved / "samples").iterdir()}
    assert prepare(moved / "dataset.h5", moved / "samples", TINY_OBS, 10) == meta
    assert {p.name: p.stat().st_mtime_ns for p in (moved / "samples").iterdir()} == before

    x, _ = load_arrays(moved / "samples", dataset.TRAIN)
    kept = np.array(x)
    other = prepare(moved / "dataset.h5", moved / "samples", TINY_OBS, 5)  # new stride
    assert other["counts"][dataset.TRAIN] > meta["counts"][dataset.TRAIN]
    np.testing.assert_array_equal(x, kept)  # the mapped old array is intact
    assert len(load_arrays(moved / "samples", dataset.TRAIN)[0]) == other["counts"]["train"]
    assert not list((moved / "samples").glob(".*tmp*"))


def test_samples_prepared_with_a_path_in_their_fingerprint_are_still_current(tiny_shard,
                                                                              tmp_path):
    """Samples from before the dataset's path left the fingerprint are not prepared again (a
    training stage doing so would make Snakemake rerun behaviour cloning afterwards)."""
    import json

    meta = prepare(tiny_shard, tmp_path, TINY_OBS, 10)
    old = {**meta, "fingerprint": {**meta["fingerprint"], "dataset": str(tiny_shard)}}
    (tmp_path / "meta.json").write_text(json.dumps(old))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert prepare(tiny_shard, tmp_path, TINY_OBS, 10) == old
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_history_csv_keeps_rows_that_older_versions_wrote_without_a_column(tmp_path):
    """A chain resumed across versions holds rows with and without a newer column: every row is
    written, every column appears once in first-seen order, and a missing cell is left empty."""
    rows = [{"iteration": 1, "return": 5.0}, {"iteration": 2, "return": 6.0, "reward_new": 0.5},
            {"iteration": 3, "reward_new": 0.25, "return": 7.0}]
    write_history(tmp_path / "h.csv", rows)
    with (tmp_path / "h.csv").open() as fh:
        reader = csv.DictReader(fh)
        read = list(reader)
    assert reader.fieldnames == ["iteration", "return", "reward_new"]
    assert [r["return"] for r in read] == ["5.0", "6.0", "7.0"]
    assert [r["reward_new"] for r in read] == ["", "0.5", "0.25"]
