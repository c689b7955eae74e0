"""Dataset exports, read back by robomimic's and LeRobot's own dataset classes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_EXPERT

from quadpipe.data import dataset

EVERY = round(0.02 / TINY_EXPERT.dt)  # a frame every 20 ms: 50 Hz


def _source(path: Path) -> dict[str, dict]:
    """Every trajectory of the quadpipe file at the export rate, with its stored split."""
    out = {}
    with h5py.File(path) as f:
        names = dataset.trajectory_names(f)
        for name, split in zip(names, dataset.split_of(f, names), strict=True):
            g = f[name]
            out[name] = {"split": split, **{k: g[k][()][::EVERY] for k in (
                "states", "qpos", "qvel", "actions")}, "last": {k: g[k][()][-1] for k in (
                    "states", "qpos", "qvel")}}
    return out


@pytest.fixture(scope="module")
def split_shard(tiny_shard, tmp_path_factory) -> Path:
    """The tiny shard with a stored split that is not "the first k train" (as merge writes it)."""
    import shutil

    path = tmp_path_factory.mktemp("split") / "dataset.h5"
    shutil.copy(tiny_shard, path)
    with h5py.File(path, "r+") as f:
        for i, name in enumerate(dataset.trajectory_names(f)):
            f[name].attrs["split"] = dataset.VALID if i in (1, 4) else dataset.TRAIN
    return path


def test_robomimic_sequence_dataset_reads_the_export(split_shard, tmp_path) -> None:
    pytest.importorskip("robomimic", reason="robomimic is not installed (.ci/run installs it)")
    import robomimic.utils.obs_utils as obs_utils
    from robomimic.utils.dataset import SequenceDataset

    from quadpipe.data.export_robomimic import OBS_KEYS, export

    out = tmp_path / "robomimic.hdf5"
    counts = export(split_shard, out, EVERY)
    src = _source(split_shard)
    assert counts == {"demos": 6, "frames": sum(len(s["actions"]) for s in src.values()),
                      "train": 4, "valid": 2}
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": list(OBS_KEYS)}})
    names = list(src)
    for split in (dataset.TRAIN, dataset.VALID):
        ds = SequenceDataset(str(out), obs_keys=OBS_KEYS, dataset_keys=("actions", "dones"),
                             filter_by_attribute=split, hdf5_cache_mode=None, seq_length=1)
        want = [n for n in names if src[n]["split"] == split]
        assert [names[int(d.split("_")[1])] for d in ds.demos] == want
        assert len(ds) == sum(len(src[n]["actions"]) for n in want)
        for i, name in enumerate(want):
            t, s = ds.get_trajectory_at_index(i), src[name]
            np.testing.assert_array_equal(t["obs"]["state"], s["states"])
            np.testing.assert_array_equal(t["obs"]["qpos"], s["qpos"])
            np.testing.assert_array_equal(t["obs"]["qvel"], s["qvel"])
            np.testing.assert_array_equal(t["actions"], s["actions"])
            np.testing.assert_array_equal(t["next_obs"]["qpos"][:-1], s["qpos"][1:])
            np.testing.assert_array_equal(t["next_obs"]["qpos"][-1], s["last"]["qpos"])
            assert t["dones"][-1] == 1 and not t["dones"][:-1].any()
            assert set(np.unique(t["obs"]["command"])) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        ds.close_and_delete_hdf5_handle()
    with h5py.File(out) as f:
        env = json.loads(f["data"].attrs["env_args"])
    assert env["env_kwargs"]["robot"] == "unitree_a1" and env["env_kwargs"]["every"] == EVERY
    assert env["env_kwargs"]["config"]["expert"]["cmd_duration"] == 0.4


# LeRobot imports torchvision at module level (for image and video features). Where the only
# torchvision wheels are CUDA builds that cannot load against the CPU torch (this project's CI),
# the reader runs in a subprocess with an empty stand-in for that import: every line of LeRobot's
# dataset code that reads a quadpipe export (no images, no videos) is still LeRobot's own.
TORCHVISION_STANDIN = {
    "torchvision/__init__.py": "from . import transforms  # noqa: F401\n",
    "torchvision/transforms/__init__.py":
        "from . import v2  # noqa: F401\n\n\nclass _Unused:\n    pass\n\n\n"
        "def __getattr__(name):\n    return _Unused\n",
    "torchvision/transforms/v2.py":
        "import types\n\n\nclass Transform:\n    pass\n\n\nfunctional = types.SimpleNamespace()"
        "\n\n\ndef __getattr__(name):\n    return Transform\n",
}

READ_WITH_LEROBOT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, out = sys.argv[1], sys.argv[2]
    ds = LeRobotDataset("quadpipe/export-test", root=root)
    items = [ds[i] for i in range(len(ds))]
    keys = ["observation.state", "observation.qpos", "observation.qvel", "action",
            "observation.command", "episode_index", "frame_index", "timestamp"]
    arrays = {k: np.stack([it[k].numpy() for it in items]) for k in keys}
    arrays["stats_action_mean"] = ds.meta.stats["action"]["mean"]
    arrays["stats_state_q50"] = ds.meta.stats["observation.state"]["q50"]
    np.savez(out, **arrays)
    window = LeRobotDataset("quadpipe/export-test", root=root,
                            delta_timestamps={"action": [0.0, 0.02, 0.04]})[0]["action"]
    print(json.dumps({"fps": ds.fps, "episodes": ds.num_episodes, "frames": len(ds),
                      "tasks": [it["task"] for it in items], "splits": ds.meta.info["splits"],
                      "robot": ds.meta.robot_type, "window": list(window.shape)}))
""")


def test_lerobot_dataset_reads_the_export(split_shard, tmp_path) -> None:
    pytest.importorskip("lerobot", reason="lerobot is not installed (.ci/run installs it)")
    from quadpipe.data.export_lerobot import export

    out = tmp_path / "lerobot"
    counts = export(split_shard, out, EVERY)
    assert counts["fps"] == 50 and counts["episodes"] == 6
    env = None
    probe = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True)
    if probe.returncode != 0:
        standin = tmp_path / "standin"
        for rel, text in TORCHVISION_STANDIN.items():
            (standin / rel).parent.mkdir(parents=True, exist_ok=True)
            (standin / rel).write_text(text)
        import os

        env = {**os.environ, "PYTHONPATH": str(standin), "HF_HUB_OFFLINE": "1"}
    script = tmp_path / "read.py"
    script.write_text(READ_WITH_LEROBOT)
    got = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "got.npz")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert got.returncode == 0, got.stderr[-3000:]
    meta = json.loads(got.stdout.strip().splitlines()[-1])
    arrays = np.load(tmp_path / "got.npz")
    src = _source(split_shard)
    # training episodes first, then the validation ones, each in id order
    order = [n for n in src if src[n]["split"] == "train"] + \
        [n for n in src if src[n]["split"] == "valid"]
    assert meta["splits"] == {"train": "0:4", "valid": "4:6"}
    assert meta["fps"] == 50 and meta["episodes"] == 6 and meta["robot"] == "unitree_a1"
    assert meta["window"] == [3, 12]
    for key, col in (("states", "observation.state"), ("qpos", "observation.qpos"),
                     ("qvel", "observation.qvel"), ("actions", "action")):
        want = np.concatenate([src[n][key] for n in order]).astype(np.float32)
        np.testing.assert_array_equal(arrays[col], want)
    lengths = [len(src[n]["actions"]) for n in order]
    np.testing.assert_array_equal(arrays["episode_index"], np.repeat(np.arange(6), lengths))
    np.testing.assert_allclose(arrays["timestamp"], arrays["frame_index"] / 50, atol=1e-6)
    actions = np.concatenate([src[n]["actions"] for n in order]).astype(np.float64)
    np.testing.assert_allclose(arrays["stats_action_mean"], actions.mean(0), rtol=1e-6)
    states = np.concatenate([src[n]["states"] for n in order]).astype(np.float64)
    np.testing.assert_allclose(arrays["stats_state_q50"], np.quantile(states, 0.5, axis=0))
    assert all(set(t.split(", ")) <= {"forward", "backward", "turn right", "turn left", "stand"}
               for t in meta["tasks"])


def test_cli_export_dataset_refuses_bad_input_in_one_line(tiny_shard, tmp_path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "quadpipe", "export-dataset", *args],
                              capture_output=True, text=True)

    r = cli(str(tiny_shard), "--format", "lerobot", "--out", str(tmp_path / "x"), "--every", "3")
    hz = 1.0 / (3 * TINY_EXPERT.dt)  # every 3rd step of the tiny shard's physics
    assert r.returncode == 2 and f"{hz:.4g} Hz" in r.stderr and len(r.stderr.splitlines()) == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = cli(str(tiny_shard), "--format", "lerobot", "--out", str(tmp_path / "mine"))
    assert r.returncode == 2 and "not a LeRobot dataset" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").exists()
    r = cli(str(tmp_path / "nope.h5"), "--format", "robomimic", "--out", str(tmp_path / "r.h5"))
    assert r.returncode == 2 and "nope.h5" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli(str(tiny_shard), "--format", "robomimic", "--out", str(tmp_path / "r.h5"))
    assert r.returncode == 0 and "6 demos" in r.stdout
