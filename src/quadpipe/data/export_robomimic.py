"""A quadpipe dataset in robomimic's HDF5 layout, for robomimic's SequenceDataset and algorithms.

Layout (robomimic's, as its SequenceDataset reads it):

| name | shape | meaning |
|---|---|---|
| data.attrs total | | frames over all demos |
| data.attrs env_args | JSON | env_name, type, env_kwargs: the robot and the generation settings |
| data/demo_<i>.attrs num_samples | | frames of demo i (trajectory i+1 of the source, in id order) |
| data/demo_<i>/obs/state | (n, 36) | the original's state vector (quadpipe.sim.state) |
| data/demo_<i>/obs/qpos, obs/qvel | (n, 19), (n, 18) | MuJoCo state |
| data/demo_<i>/obs/command | (n, 1) float32 | command code in force, 1..5 (quadpipe.sim.commands) |
| data/demo_<i>/next_obs/... | as obs | the same at the next frame (last frame: last step) |
| data/demo_<i>/actions | (n, 12) | torque of the frame's step, N m |
| data/demo_<i>/dones | (n,) int64 | 1 at the last frame |
| mask/train, mask/valid | (k,) bytes | demo names of quadpipe's stored split (by trajectory) |

There are no rewards (robomimic fills zeros when asked for them). env_args' `type` is null: a
quadpipe robot is none of robomimic's environment types, so train with rollouts disabled and
evaluate with `quadpipe evaluate`. Each demo keeps its source in the attrs `quadpipe_trajectory`.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from quadpipe.data import dataset
from quadpipe.data.export_frames import DEFAULT_EVERY, read_frames, resolve_every, settings

ENV_NAME = "quadpipe-a1-locomotion"
OBS_KEYS = ("state", "qpos", "qvel", "command")


def export(source: str | Path, out: str | Path, every: int | None = DEFAULT_EVERY
           ) -> dict[str, int]:
    """Write `out` (atomically) from the quadpipe file `source`; returns demo and frame counts."""
    every = resolve_every(source, every)
    meta = settings(source, every)
    masks: dict[str, list[str]] = {dataset.TRAIN: [], dataset.VALID: []}
    total = 0
    with dataset.atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i, fr in enumerate(read_frames(source, every)):
            demo = f"demo_{i}"
            g = data.create_group(demo)
            obs = {"state": fr.state, "qpos": fr.qpos, "qvel": fr.qvel,
                   "command": fr.command[:, None].astype(np.float32)}
            nxt = {"state": fr.next_state, "qpos": fr.next_qpos, "qvel": fr.next_qvel,
                   "command": fr.next_command[:, None].astype(np.float32)}
            for k in OBS_KEYS:
                g.create_dataset(f"obs/{k}", data=obs[k])
                g.create_dataset(f"next_obs/{k}", data=nxt[k])
            g.create_dataset("actions", data=fr.action)
            dones = np.zeros(len(fr.steps), dtype=np.int64)
            dones[-1] = 1
            g.create_dataset("dones", data=dones)
            g.attrs["num_samples"] = len(fr.steps)
            g.attrs["quadpipe_trajectory"] = fr.name
            masks[fr.split].append(demo)
            total += len(fr.steps)
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": ENV_NAME, "type": None,
                                             "env_kwargs": meta})
        for split, demos in masks.items():
            f.create_dataset(f"mask/{split}", data=np.array(demos, dtype="S"))
    return {"demos": sum(len(d) for d in masks.values()), "frames": total,
            "train": len(masks[dataset.TRAIN]), "valid": len(masks[dataset.VALID])}
