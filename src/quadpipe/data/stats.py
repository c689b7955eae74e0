"""Dataset statistics: the original's analyze_dataset, as pandas tables and plots.

`trajectory_table` has one row per trajectory (what it did: duration, commands, distance, turning,
height, peak torques); `summary_table` the dataset-wide figures (sizes, durations, acceptance,
state/action mean and std per channel). `write_stats` writes both as CSV plus the plots of the
report; `html_page` is how every table appears in the Snakemake report (evaluation.tables too).

Everything comes from one pass over the data (`scan`), each trajectory read once, and what the
pass keeps does not grow with the data: channel sums, a fixed-bin histogram of |torque| per joint
(the box plot's quartiles and whiskers, to its 0.005 N m bins) and the first PATHS_SHOWN paths.
So stats costs the same per trajectory at 160 or 5,000 trajectories (benchmarks/scale.py).

`acceptance_table` is the stability filter's record: for a randomised dataset, acceptance and
rejections per reason in quantile bins of each drawn quantity (from the attempts table, every
attempt the shards used, rejected ones included); otherwise the outcome counts of the summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quadpipe.data import dataset
from quadpipe.sim import randomize
from quadpipe.sim.commands import NAMES
from quadpipe.sim.model import JOINTS, LEGS
from quadpipe.sim.stability import REASONS, STABLE
from quadpipe.sim.state import ACTION_DIM, STATE_DIM, yaw

JOINT_NAMES = tuple(f"{leg}_{joint}" for leg in LEGS for joint in JOINTS)
# Names of the 36 state channels, in the layout of quadpipe.sim.state.
STATE_NAMES = (
    "base_x", "base_y", "base_z", "rotvec_x", "rotvec_y", "rotvec_z",
    "vel_x", "vel_y", "vel_z", "angvel_x", "angvel_y", "angvel_z",
    *(f"{j}_{kind}" for j in JOINT_NAMES for kind in ("q", "qd")),
)
PATH_SAMPLE_S = 0.1  # s, resolution of the travelled-distance sum (ignores the gait's sway)
PATHS_SHOWN = 200  # trajectories drawn in the top-view plot
TORQUE_BIN = 0.005  # N m, resolution of the torque distribution
TORQUE_MAX = 200.0  # N m, top of the histogram (larger values land in its last bin)
PLOTS = ("paths", "commands", "durations", "torques", "acceptance")
TABLES = ("trajectories.csv", "summary.csv", "acceptance.csv", "trajectories.html",
          "summary.html", "acceptance.html")
ACCEPTANCE_BINS = 5  # quantile bins per drawn quantity

assert len(STATE_NAMES) == STATE_DIM and len(JOINT_NAMES) == ACTION_DIM


@dataclasses.dataclass
class Scan:
    """What one pass over a dataset gathers for the tables and plots."""

    root: dict[str, Any]
    trajectories: pd.DataFrame
    state_sum: np.ndarray
    state_sq: np.ndarray
    action_sum: np.ndarray
    action_sq: np.ndarray
    torque_hist: np.ndarray  # (ACTION_DIM, bins) counts of |torque| in TORQUE_BIN bins
    paths: list[np.ndarray]  # xy of the first PATHS_SHOWN trajectories, every 50th step
    attempts: pd.DataFrame | None  # the attempts table of a randomised dataset


def scan(path: str | Path) -> Scan:
    """Read every trajectory of a shard or merged dataset once; see the module docstring."""
    rows = []
    sums = {k: np.zeros(n) for k, n in (("s", STATE_DIM), ("s2", STATE_DIM), ("a", ACTION_DIM),
                                         ("a2", ACTION_DIM))}
    bins = int(round(TORQUE_MAX / TORQUE_BIN))
    hist = np.zeros((ACTION_DIM, bins), dtype=np.int64)
    paths = []
    with dataset.open_file(path) as f:
        root = dict(f.attrs)
        drawn = dataset.read_attempts(f)
        names = dataset.trajectory_names(f)
        splits = dataset.split_of(f, names)
        for name, split in zip(names, splits, strict=True):
            g = f[name]
            qpos = g["qpos"][()]
            actions = g["actions"][()]
            states = dataset.time_series(g, "states").astype(np.float64)
            u = actions.astype(np.float64)
            rows.append(_trajectory_row(g, split, qpos.astype(np.float64), actions))
            sums["s"] += states.sum(axis=0)
            sums["s2"] += np.square(states).sum(axis=0)
            sums["a"] += u.sum(axis=0)
            sums["a2"] += np.square(u).sum(axis=0)
            idx = np.minimum((np.abs(u) / TORQUE_BIN).astype(np.int64), bins - 1)
            for j in range(ACTION_DIM):
                hist[j] += np.bincount(idx[:, j], minlength=bins)
            if len(paths) < PATHS_SHOWN:
                paths.append(qpos[::50, 0:2].astype(np.float64))
    table = pd.DataFrame(rows).set_index("trajectory_id")
    return Scan(root, table, sums["s"], sums["s2"], sums["a"], sums["a2"], hist, paths,
                None if drawn is None else pd.DataFrame(drawn))


def trajectory_table(path: str | Path) -> pd.DataFrame:
    """One row per trajectory of a shard or merged dataset, indexed by trajectory_id.

    Units: s, m, deg, m/s, N m. `distance_m` is the xy path length sampled every PATH_SAMPLE_S,
    `yaw_change_deg` the net (unwrapped) change of heading, `peak_torque_<joint>` max |torque|.
    """
    return scan(path).trajectories


def _trajectory_row(g: Any, split: str, qpos: np.ndarray, actions: np.ndarray
                    ) -> dict[str, Any]:
    a = g.attrs
    dt = float(a["dt"])
    cmds = g["command_sequence"][()]
    n = len(qpos)
    every = max(1, int(round(PATH_SAMPLE_S / dt)))
    xy = qpos[::every, 0:2]
    xy = np.vstack([xy, qpos[-1:, 0:2]])
    heading = np.unwrap(yaw(qpos[:, 3:7]))
    duration = n * dt
    distance = float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1)))
    row: dict[str, Any] = {
        "trajectory_id": int(a["trajectory_id"]),
        "split": split,
        "source_shard": int(a.get("source_shard", a["shard"])),
        "source_trajectory_id": int(a.get("source_trajectory_id", a["trajectory_id"])),
        "num_timesteps": n,
        "duration_s": duration,
        "num_commands": len(cmds),
        **{f"n_{NAMES[c].replace(' ', '_')}": int(np.sum(cmds == c)) for c in NAMES},
        "distance_m": distance,
        "displacement_m": float(np.linalg.norm(qpos[-1, 0:2] - qpos[0, 0:2])),
        "yaw_change_deg": float(np.degrees(heading[-1] - heading[0])),
        "mean_speed_mps": distance / duration,
        "height_mean_m": float(qpos[:, 2].mean()),
        "height_std_m": float(qpos[:, 2].std()),
        **{f"peak_torque_{j}": float(v)
           for j, v in zip(JOINT_NAMES, np.abs(actions).max(axis=0), strict=True)},
    }
    if randomize.PHYSICS_ATTR in a:  # randomised: the draw's scalars
        physics, pushes = randomize.from_json(str(a[randomize.PHYSICS_ATTR]))
        row.update({f"physics_{k}": v for k, v in randomize.summary(physics, pushes).items()})
    return row


def summary_table(path: str | Path, scanned: Scan | None = None) -> pd.DataFrame:
    """Dataset-wide figures as rows (quantity, value, unit): the original analyze_dataset's."""
    path = Path(path)
    sc = scan(path) if scanned is None else scanned
    trajectories, root = sc.trajectories, sc.root
    rows: list[tuple[str, float, str]] = []
    steps = int(trajectories["num_timesteps"].sum())
    size = path.stat().st_size
    d = trajectories["duration_s"]
    c = trajectories["num_commands"]
    rows += [
        ("num_trajectories", len(trajectories), ""),
        ("num_train", int((trajectories["split"] == dataset.TRAIN).sum()), ""),
        ("num_valid", int((trajectories["split"] == dataset.VALID).sum()), ""),
        ("total_timesteps", steps, "steps"),
        ("total_duration", float(d.sum()), "s"),
        ("duration_min", float(d.min()), "s"),
        ("duration_mean", float(d.mean()), "s"),
        ("duration_max", float(d.max()), "s"),
        ("sequence_length_min", int(c.min()), "commands"),
        ("sequence_length_mean", float(c.mean()), "commands"),
        ("sequence_length_max", int(c.max()), "commands"),
        ("distance_mean", float(trajectories["distance_m"].mean()), "m"),
        ("file_size", size / 1e6, "MB"),
        ("bytes_per_timestep", size / max(steps, 1), "B"),
        ("acceptance_rate", float(root["acceptance_rate"]), ""),
        ("total_attempts", int(root["total_attempts"]), ""),
        ("rejected_count", int(root["rejected_count"]), ""),
        *((key, int(root[key]), "") for key in dataset.REJECTION_ATTRS),
        ("dt", float(root["dt"]), "s"),
        ("cmd_duration", float(root["cmd_duration"]), "s"),
    ]
    rows += _channel_rows("state", STATE_NAMES, sc.state_sum, sc.state_sq, steps)
    rows += _channel_rows("action", JOINT_NAMES, sc.action_sum, sc.action_sq, steps)
    return pd.DataFrame(rows, columns=["quantity", "value", "unit"])


def _channel_rows(kind: str, names: Sequence[str], total: np.ndarray, sq: np.ndarray,
                  n: int) -> list[tuple[str, float, str]]:
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
    rows = []
    for name, m, s in zip(names, mean, std, strict=True):
        rows += [(f"{kind}_mean.{name}", float(m), ""), (f"{kind}_std.{name}", float(s), "")]
    return rows


def acceptance_table(sc: Scan) -> pd.DataFrame:
    """Attempts, acceptance and rejections per reason: per quantile bin of every drawn quantity
    when the data are randomised, else one row for all attempts (the summary's counts)."""
    reasons = [f"rejected_{r}" for r in REASONS]
    if sc.attempts is None:
        root = sc.root
        row = {"quantity": "all attempts", "bin_low": np.nan, "bin_high": np.nan,
               "attempts": int(root["total_attempts"]), "accepted": int(root["stable_count"]),
               **{k: int(root[k]) for k in reasons}}
        rows = [row]
    else:
        att = sc.attempts
        rows = []
        for quantity in _drawn_quantities(att):
            values = att[quantity].to_numpy()
            edges = np.unique(np.quantile(values, np.linspace(0, 1, ACCEPTANCE_BINS + 1)))
            which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0,
                            max(len(edges) - 2, 0))
            for b in range(max(len(edges) - 1, 1)):
                sel = att[which == b]
                rows.append({"quantity": quantity, "bin_low": float(edges[b]),
                             "bin_high": float(edges[min(b + 1, len(edges) - 1)]),
                             "attempts": len(sel), "accepted": int((sel["reason"] == STABLE).sum()),
                             **{f"rejected_{r}": int((sel["reason"] == r).sum())
                                for r in REASONS}})
    table = pd.DataFrame(rows)
    table.insert(5, "acceptance_rate", table["accepted"] / table["attempts"].clip(lower=1))
    return table


def _drawn_quantities(attempts: pd.DataFrame) -> list[str]:
    """The attempts table's drawn quantities that vary (a [1, 1] range is not a quantity)."""
    keys = [k for k in attempts.columns if k not in ("shard", "attempt", "reason")]
    return [k for k in keys if attempts[k].nunique() > 1]


def write_stats(path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write TABLES (CSV and HTML) and plots/<name>.png (PLOTS) into `out_dir`."""
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    sc = scan(path)
    traj = sc.trajectories
    summary = summary_table(path, sc)
    files = {name: out_dir / name for name in TABLES}
    traj.to_csv(files["trajectories.csv"])
    summary.to_csv(files["summary.csv"], index=False)
    files["trajectories.html"].write_text(html_page(traj, "Trajectories of the dataset"))
    files["summary.html"].write_text(html_page(summary, "Dataset summary", index=False))
    accept = acceptance_table(sc)
    accept.to_csv(files["acceptance.csv"], index=False)
    files["acceptance.html"].write_text(html_page(accept, "Stability filter: acceptance and "
                                                   "rejections", index=False))
    files.update(write_plots(sc, out_dir / "plots", accept))
    return files


def write_plots(sc: Scan, out_dir: Path, accept: pd.DataFrame | None = None
                ) -> dict[str, Path]:
    """The report's dataset plots: top-view paths, command mix, durations, torque distributions,
    and the stability filter's acceptance (`acceptance_table`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {name: out_dir / f"{name}.png" for name in PLOTS}
    traj, paths = sc.trajectories, sc.paths

    fig, ax = plt.subplots(figsize=(6, 6))
    for xy in paths:
        ax.plot(xy[:, 0], xy[:, 1], lw=0.8, alpha=0.7)
        ax.plot(xy[-1, 0], xy[-1, 1], "k.", ms=3)
    ax.plot(0, 0, "r*", ms=10, label="start")
    ax.set(xlabel="x (m)", ylabel="y (m)", title=f"Base paths, top view ({len(paths)} shown)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend()
    _save(fig, files["paths"])

    fig, ax = plt.subplots(figsize=(6, 4))
    counts = [int(traj[f"n_{NAMES[c].replace(' ', '_')}"].sum()) for c in NAMES]
    ax.bar([NAMES[c] for c in NAMES], counts, color="tab:blue")
    ax.set(ylabel="commands", title="Command mix")
    _save(fig, files["commands"])

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(traj["duration_s"], bins=min(30, max(5, len(traj) // 3)), color="tab:green")
    ax.set(xlabel="duration (s)", ylabel="trajectories", title="Trajectory durations")
    _save(fig, files["durations"])

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bxp([box_stats(h) for h in sc.torque_hist], showfliers=False)
    ax.set_xticks(range(1, ACTION_DIM + 1), JOINT_NAMES, rotation=60)
    ax.set(ylabel="|torque| (N m)", title="Joint torque distribution (all steps)")
    _save(fig, files["torques"])
    _acceptance_plot(acceptance_table(sc) if accept is None else accept, files["acceptance"])
    return files


def _acceptance_plot(accept: pd.DataFrame, out: Path) -> None:
    """Share of attempts rejected, stacked by reason, per bin of each drawn quantity (one panel
    each); for nominal data one bar per outcome."""
    import matplotlib.pyplot as plt

    reasons = [r for r in REASONS if accept[f"rejected_{r}"].sum() > 0]
    quantities = list(dict.fromkeys(accept["quantity"]))
    if quantities == ["all attempts"]:
        row = accept.iloc[0]
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = ["accepted", *REASONS]
        values = [row["accepted"], *(row[f"rejected_{r}"] for r in REASONS)]
        ax.bar(labels, values, color=["tab:green"] + ["tab:red"] * len(REASONS))
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
        ax.set(ylabel="attempts", title=f"Stability filter, nominal physics: acceptance "
                                        f"{row['acceptance_rate']:.0%} of {row['attempts']}")
        _save(fig, out)
        return
    cols = 3
    nrows = -(-len(quantities) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    colors = dict(zip(REASONS, plt.get_cmap("tab10").colors, strict=False))
    for ax, quantity in zip(axes.flat, quantities, strict=False):
        rows = accept[accept["quantity"] == quantity]
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for r in reasons:
            share = (rows[f"rejected_{r}"] / rows["attempts"].clip(lower=1)).to_numpy()
            ax.bar(x, share, bottom=bottom, color=colors[r], label=r)
            bottom += share
        ax.set_xticks(x, [f"{lo:.3g}-{hi:.3g}" for lo, hi in zip(rows["bin_low"],
                                                                 rows["bin_high"], strict=True)],
                      rotation=40, ha="right", fontsize=7)
        ax.set(title=quantity, ylim=(0, max(0.05, float(bottom.max()) * 1.15)),
               ylabel="share rejected")
    for ax in axes.flat[len(quantities):]:
        ax.axis("off")
    if reasons:
        axes.flat[0].legend(fontsize=7)
    total = int(accept[accept["quantity"] == quantities[0]]["attempts"].sum())
    ok = int(accept[accept["quantity"] == quantities[0]]["accepted"].sum())
    fig.suptitle(f"Stability filter under randomised physics: {ok} of {total} attempts "
                 f"accepted ({ok / max(total, 1):.0%}); rejections per reason by drawn quantity")
    _save(fig, out)


def box_stats(hist: np.ndarray, whis: float = 1.5) -> dict[str, float]:
    """Box-plot figures (matplotlib's `bxp` keys) of the values binned in `hist` (TORQUE_BIN
    bins from 0): quartiles at bin centres (within a bin of the data's), whiskers at the furthest
    bins within `whis` IQR (within 3 bins: their limits carry the quartiles' rounding)."""
    centres = (np.arange(len(hist)) + 0.5) * TORQUE_BIN
    cum = np.cumsum(hist)
    n = cum[-1]

    def quantile(q: float) -> float:
        return float(centres[np.searchsorted(cum, q * n)])

    q1, med, q3 = quantile(0.25), quantile(0.5), quantile(0.75)
    filled = centres[hist > 0]
    low, high = q1 - whis * (q3 - q1), q3 + whis * (q3 - q1)
    half = TORQUE_BIN / 2  # a bin may hold values on both sides of a whisker's limit
    lo = max(float(filled[filled + half >= low].min()), low)
    hi = min(float(filled[filled - half <= high].max()), high)
    return {"med": med, "q1": q1, "q3": q3, "whislo": lo, "whishi": hi}


def _save(fig: Any, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def html_page(table: pd.DataFrame, title: str, index: bool = True) -> str:
    """A standalone HTML page showing `table`: how tables appear in the Snakemake report."""
    body = table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="", border=0, index=index,
                         classes="quadpipe-table")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            f"th{{background:#eee}}</style></head><body><h2>{escape(title)}</h2>\n"
            f"{body}\n</body></html>\n")
