"""Closed-loop evaluation: path shapes, the path-following expert, and the metrics JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quadpipe.cli import main
from quadpipe.control.paths import KINDS, path_xy, target
from quadpipe.evaluation.evaluate import (
    EvalConfig,
    evaluate_path,
    path_metrics,
    run_expert,
    run_standing,
)
from quadpipe.learn.train import TrainConfig, train

METRICS = ("mean_tracking_error_m", "max_tracking_error_m", "final_tracking_error_m",
           "path_length_m", "height_mean_m", "height_std_m", "fell", "fall_time_s",
           "mean_cross_track_error_m", "max_cross_track_error_m", "progress_m",
           "progress_fraction", "steps_per_s")


@pytest.mark.parametrize("kind", KINDS)
def test_path_shape_and_constant_speed(kind) -> None:
    xy = target(kind, 2001, 0.001, 0.25, 1.0, np.array([1.0, 2.0]), start_yaw=0.3)
    assert xy.shape == (2001, 2)
    np.testing.assert_allclose(xy[0], [1.0, 2.0], atol=1e-12)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    np.testing.assert_allclose(step, 0.25e-3, rtol=1e-3)  # arc-length parameterised
    heading = np.arctan2(*(xy[1] - xy[0])[::-1])
    assert heading == pytest.approx(0.3 + (np.deg2rad(30) if kind == "zigzag" else 0.0), abs=1e-3)


def test_circle_and_figure8_radius() -> None:
    s = np.linspace(0, 4 * np.pi, 500)
    np.testing.assert_allclose(np.linalg.norm(path_xy("circle", s, 1.0) - [0, 1.0], axis=1), 1.0)
    f8 = path_xy("figure8", s, 1.0)
    assert f8[:, 1].max() == pytest.approx(2.0, abs=1e-3)
    assert f8[:, 1].min() == pytest.approx(-2.0, abs=1e-3)


def test_expert_follows_straight_path() -> None:
    """Measured: cross-track < 5 cm, tracking error < 15 cm over 8 s at 0.25 m/s."""
    cfg = EvalConfig(duration=8.0)
    m = path_metrics(run_expert("straight", cfg).qpos, "straight", cfg, 0.001)
    assert not m["fell"]
    assert m["max_cross_track_error_m"] < 0.05
    assert m["mean_tracking_error_m"] < 0.15
    assert 0.85 < m["progress_fraction"] < 1.15


def test_standing_has_no_progress() -> None:
    cfg = EvalConfig(duration=2.0)
    m = path_metrics(run_standing(cfg).qpos, "circle", cfg, 0.001)
    assert not m["fell"] and m["path_length_m"] < 0.01 and m["progress_m"] < 0.05
    assert m["final_tracking_error_m"] == pytest.approx(0.5, abs=0.02)  # 2 s at 0.25 m/s


@pytest.fixture(scope="module")
def tiny_policy(tiny_shard, tmp_path_factory):
    out = tmp_path_factory.mktemp("policy")
    train(tiny_shard, out, TrainConfig(epochs=1, sample_stride=10, hidden=(32, 32, 16), horizon=200,
                      waypoint_every=40, dagger_rounds=0),
          progress=False)
    return out / "best.pt"


def test_eval_json_has_every_metric(tiny_policy, tmp_path) -> None:
    cfg = EvalConfig(duration=1.0, video_seconds=0.3)
    res = evaluate_path(tiny_policy, "circle", cfg, out=tmp_path / "c.json",
                        plot=tmp_path / "c.png", video=tmp_path / "c.mp4")
    on_disk = json.loads((tmp_path / "c.json").read_text())
    assert on_disk["path"] == "circle"
    for who in ("policy", "expert", "standing"):
        for key in METRICS:
            assert key in on_disk[who], (who, key)
        m = on_disk[who]
        assert 0 <= m["mean_tracking_error_m"] <= m["max_tracking_error_m"] < 2.0
        assert 0 < m["duration_s"] <= 1.0 + 1e-9
        assert m["steps_per_s"] > 0
        assert (m["fall_time_s"] is None) == (not m["fell"])
    assert not res["expert"]["fell"] and 0.2 < res["expert"]["height_mean_m"] < 0.4
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "c.mp4").stat().st_size > 0


def test_cli_evaluate(tiny_policy, tmp_path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("eval:\n  duration: 0.5\n  video: false\n")
    out = tmp_path / "s.json"
    assert main(["evaluate", "--checkpoint", str(tiny_policy), "--path", "straight", "--out",
                 str(out), "--video", str(tmp_path / "s.mp4"), "--config", str(cfg)]) == 0
    assert out.exists() and not (tmp_path / "s.mp4").exists()
    assert main(["evaluate", "--checkpoint", str(tiny_policy), "--path", "spiral", "--out",
                 str(out)]) == 2
