"""CLI verbs of the workflow's data stages: merge, stats, replay, view, and the report pages.

Imported by quadpipe.cli to register them; each verb is a thin shell over its module.
"""

from __future__ import annotations

import argparse

from quadpipe.cli.main import verb


def _merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shards", nargs="+", help="shard files, in the order to number them")
    p.add_argument("--out", required=True, help="merged dataset file to write")
    p.add_argument("--summary", help="also write the original's summary.h5 here")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="share of trajectories in the validation split (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid split")
    p.add_argument("--layout", choices=("link", "copy"), default="link",
                   help="link: the time series stay in the shards, linked (default; keep the "
                        "shards beside it); copy: a self-contained file")


@verb("merge", _merge_args)
def _merge(args: argparse.Namespace) -> None:
    """Merge shards into one dataset with a fixed train/valid split."""
    from quadpipe.data.merge import merge_shards

    attrs = merge_shards(args.shards, args.out, args.summary, args.valid_fraction, args.seed,
                         args.layout)
    print(f"{args.out}: {attrs['num_trajectories']} trajectories from {attrs['num_tasks']} "
          f"shards, acceptance {attrs['acceptance_rate']:.1%}")


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="merged dataset (or a shard)")
    p.add_argument("--out-dir", required=True,
                   help="folder for trajectories.csv, summary.csv and plots/")


@verb("stats", _stats_args)
def _stats(args: argparse.Namespace) -> None:
    """Tables and plots describing a dataset."""
    from quadpipe.data.stats import write_stats

    for name, path in write_stats(args.dataset, args.out_dir).items():
        print(f"{name}: {path}")


def _replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="merged dataset (or a shard)")
    p.add_argument("--trajectory", type=int, default=1, help="trajectory id (default 1)")
    p.add_argument("--out", required=True, help="JSON report of the replay check")
    p.add_argument("--video", help="also render an mp4 here")
    p.add_argument("--video-seconds", type=float, default=8.0, help="video length (s)")
    p.add_argument("--fps", type=int, default=30, help="video frames per second")


@verb("replay", _replay_args)
def _replay(args: argparse.Namespace) -> None:
    """Re-simulate a stored trajectory, check it, optionally render it."""
    from quadpipe.data.replay import replay_to_files

    report = replay_to_files(args.dataset, args.trajectory, args.out, args.video,
                             args.video_seconds, args.fps)
    print(f"trajectory {args.trajectory}: reproduced, max qpos error "
          f"{report['max_qpos_error']:.2e}")


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="merged dataset (or a shard)")
    p.add_argument("--trajectory", type=int, default=1, help="trajectory id (default 1)")
    p.add_argument("--fps", type=float, default=60.0,
                   help="frames per second of simulated time; an arrow key steps one frame "
                        "(default 60; 1 / dt steps through every row)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="playback speed, 1 = real time (default 1)")


@verb("view", _view_args)
def _view(args: argparse.Namespace) -> None:
    """Play a stored trajectory in the interactive MuJoCo viewer (needs a display)."""
    import os
    import sys

    from quadpipe.data.playback import load
    from quadpipe.sim.viewer import play

    frames, model = load(args.dataset, args.trajectory, args.fps)
    captions = [frames.caption(k) for k in range(len(frames.steps))]
    fallback = (f"render a video instead: snakemake --cores 1 "
                f"results/replay/trajectory_{args.trajectory:05d}.mp4 (the workflow's dataset), "
                f"or quadpipe replay {args.dataset} --trajectory {args.trajectory} "
                f"--out replay.json --video replay.mp4")
    play(model, frames.qpos, frames.times, captions, frames.fps,
         f"trajectory {args.trajectory}", os.environ, sys.platform, args.speed, fallback)


def _video_page_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", help="mp4 files")
    p.add_argument("--out", required=True, help="HTML page to write (videos embedded)")
    p.add_argument("--title", default="Videos", help="page title")


@verb("video-page", _video_page_args)
def _video_page(args: argparse.Namespace) -> None:
    """A self-contained HTML page of <video> players."""
    from quadpipe.data.replay import video_page

    video_page(args.videos, args.out, args.title)
