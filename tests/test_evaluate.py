"""Named-path evaluation: paths as data, the path-following expert, the metrics JSON, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quadpipe.cli import main
from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import start_qpos
from quadpipe.control.paths import ORIGINALS, SHAPES, parse_path, parse_paths
from quadpipe.errors import ConfigError
from quadpipe.evaluation.named import EvalConfig, evaluate_path, place_target
from quadpipe.evaluation.rollouts import run_groups
from quadpipe.learn.policy import load_checkpoint
from quadpipe.sim.model import build_model

METRICS = ("mean_tracking_error_m", "max_tracking_error_m", "final_tracking_error_m",
           "path_length_m", "height_mean_m", "height_std_m", "fell", "fall_time_s",
           "mean_cross_track_error_m", "max_cross_track_error_m", "progress_m",
           "progress_fraction")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_starts_at_the_origin_heading_x_at_constant_speed(shape) -> None:
    s, xy = parse_path(shape).sample(12.0)
    np.testing.assert_allclose(xy[0], [0.0, 0.0], atol=1e-12)
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    np.testing.assert_allclose(step, 0.005, rtol=2e-3)  # arc-length parameterised
    heading = np.degrees(np.arctan2(*(xy[1] - xy[0])[::-1]))
    expected = {"zigzag": 30.0, "sine": np.degrees(np.arctan(0.5 * 2 * np.pi / 4.0))}
    assert heading == pytest.approx(expected.get(shape, 0.0), abs=0.5)


def test_shape_parameters_change_the_shape() -> None:
    s = np.linspace(0, 4 * np.pi, 500)
    big = parse_path({"name": "big", "shape": "circle", "radius": 2.0, "direction": "right"})
    _, xy = big.sample(4 * np.pi)
    np.testing.assert_allclose(np.linalg.norm(xy - [0, -2.0], axis=1), 2.0, atol=1e-9)
    _, f8 = parse_path("figure8", radius=1.0).sample(s[-1])
    assert f8[:, 1].max() == pytest.approx(2.0, abs=1e-3)
    assert f8[:, 1].min() == pytest.approx(-2.0, abs=1e-3)
    _, sq = parse_path({"name": "sq", "shape": "square", "side": 1.5}).sample(6.0)
    assert sq[:, 0].max() == pytest.approx(1.5) and sq[:, 1].max() == pytest.approx(1.5)
    np.testing.assert_allclose(sq[-1], [0.0, 0.0], atol=1e-9)  # one lap ends where it began


def test_the_originals_are_the_default_paths() -> None:
    specs = parse_paths(list(ORIGINALS), radius=1.0)
    assert [s.name for s in specs] == ["circle", "figure8", "straight", "zigzag"]
    assert dict(specs[3].params) == {"leg": 1.0, "corner_deg": 60.0}


@pytest.mark.parametrize("entry, key", [
    ({"name": "x", "shape": "spiral"}, "eval.paths[0] (x).shape"),
    ({"name": "x", "shape": "circle", "radius": -1}, "eval.paths[0] (x).radius"),
    ({"name": "x", "shape": "circle", "radious": 1}, "'radious'"),
    ({"name": "x", "shape": "circle", "direction": "up"}, "eval.paths[0] (x).direction"),
    ({"name": "x y", "shape": "circle"}, "eval.paths[0].name"),
    ({"name": "x", "waypoints": [[0, 0]]}, "eval.paths[0] (x).waypoints"),
    ({"name": "x", "waypoints": [[0, 0], [0, 0]]}, "eval.paths[0] (x).waypoints"),
    ({"name": "x", "waypoints": [[0, 0], [1, "a"]]}, "eval.paths[0] (x).waypoints"),
    ({"name": "x", "waypoints": "missing.csv"}, "missing.csv"),
    ("hexagon", "eval.paths[0] (hexagon).shape"),
])
def test_a_bad_path_entry_fails_naming_the_key(entry, key) -> None:
    with pytest.raises(ConfigError, match=key.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse_paths([entry])


def test_duplicate_path_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"eval.paths\[1\].*'circle' is used twice"):
        parse_paths(["circle", {"name": "circle", "shape": "circle", "radius": 2.0}])


@pytest.mark.parametrize("text, suffix", [("x,y\n1,1\n3,1\n3,2.5\n", ".csv"),
                                          ("- [1, 1]\n- [3, 1]\n- [3, 2.5]\n", ".yaml")])
def test_waypoint_files_are_read_and_moved_to_the_robot(tmp_path, text, suffix) -> None:
    (tmp_path / f"p{suffix}").write_text(text)
    spec = parse_paths([{"name": "lab", "waypoints": f"p{suffix}"}], base_dir=tmp_path)[0]
    assert spec.points == ((0.0, 0.0), (2.0, 0.0), (2.0, 1.5))
    s, xy = spec.sample(100.0)
    assert s[-1] == pytest.approx(3.5) and xy[-1] == pytest.approx([2.0, 1.5])


def test_expert_follows_a_straight_path() -> None:
    """Measured: cross-track < 5 cm, tracking error < 15 cm over 8 s at 0.25 m/s."""
    m = _expert_metrics("straight", 8.0)["expert"][0]
    assert not m["fell"]
    assert m["max_cross_track_error_m"] < 0.05
    assert m["mean_tracking_error_m"] < 0.15
    assert 0.85 < m["progress_fraction"] < 1.15


def test_standing_has_no_progress() -> None:
    m = _expert_metrics("circle", 2.0)["standing"][0]
    assert not m["fell"] and m["path_length_m"] < 0.01 and m["progress_m"] < 0.05
    assert m["final_tracking_error_m"] == pytest.approx(0.5, abs=0.02)  # 2 s at 0.25 m/s


def _expert_metrics(path: str, duration: float) -> dict:
    expert, cfg = ExpertConfig(), EvalConfig(duration=duration)
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    target, num = place_target(parse_path(path), cfg, expert, q0)
    return run_groups([target], num, q0, [model], {}, expert, cfg.follower, standing=True).metrics


def test_policies_observed_together_drive_as_each_alone(tiny_policies) -> None:
    """Policies that observe alike share one observation per step (SharedObservation): each one's
    episodes are the same bits as with that policy alone."""
    expert = ExpertConfig()
    model = build_model(expert, pd="torque")
    q0 = start_qpos(model)
    targets = [place_target(parse_path(name), EvalConfig(duration=0.4), expert, q0)[0]
               for name in ("circle", "zigzag", "straight")]
    policies = {f"seed_{i}": load_checkpoint(c)[:2] for i, c in enumerate(tiny_policies)}
    together = run_groups(targets, 400, q0, [model] * 3, policies, expert, standing=True)
    for name, policy in policies.items():
        alone = run_groups(targets, 400, q0, [model] * 3, {name: policy}, expert,
                           with_expert=False)
        np.testing.assert_array_equal(alone.qpos[name], together.qpos[name])
        assert json.dumps(alone.metrics[name]) == json.dumps(together.metrics[name])
    assert not np.array_equal(together.qpos["seed_0"], together.qpos["seed_1"])


def test_a_waypoint_path_ends_where_its_polyline_ends() -> None:
    spec = parse_path({"name": "l", "waypoints": [[0, 0], [0.6, 0], [0.6, 0.4]]})
    expert, cfg = ExpertConfig(), EvalConfig(duration=30.0)
    target, num = place_target(spec, cfg, expert, start_qpos(build_model(expert, pd="torque")))
    assert num == int(1.0 / cfg.speed / expert.dt)  # 1 m of path at 0.25 m/s


def test_eval_json_has_every_metric_for_every_seed(tiny_policies, tmp_path) -> None:
    spec = parse_path({"name": "mine", "waypoints": [[0, 0], [0.5, 0], [0.5, 0.5]]})
    res = evaluate_path(tiny_policies, spec, EvalConfig(duration=1.0), seeds=[0, 1],
                        out=tmp_path / "mine.json", plot=tmp_path / "mine.png")
    on_disk = json.loads((tmp_path / "mine.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert on_disk["path"] == "mine" and on_disk["spec"]["shape"] == "waypoints"
    assert [s["seed"] for s in on_disk["seeds"]] == [0, 1]
    assert on_disk["policy"]["mean_tracking_error_m"] == on_disk["seeds"][0][
        "mean_tracking_error_m"]  # the first seed's policy is the top-level one
    for m in [on_disk["expert"], on_disk["standing"], *on_disk["seeds"]]:
        for key in METRICS:
            assert key in m, key
        assert 0 <= m["mean_tracking_error_m"] <= m["max_tracking_error_m"] < 2.0
        assert 0 < m["duration_s"] <= 1.0 + 1e-9
        assert (m["fall_time_s"] is None) == (not m["fell"])
    assert on_disk["across_seeds"]["n"] == 2
    assert not res["expert"]["fell"] and 0.2 < res["expert"]["height_mean_m"] < 0.4
    assert (tmp_path / "mine.png").stat().st_size > 0


def test_cli_evaluate_and_render(tiny_policies, tmp_path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("eval:\n  duration: 0.5\n  video_seconds: 0.3\n  paths:\n"
                   "    - {name: wide, shape: circle, radius: 3.0}\n")
    out = tmp_path / "wide.json"
    assert main(["evaluate", "--checkpoint", *map(str, tiny_policies), "--path", "wide",
                 "--out", str(out), "--config", str(cfg)]) == 0
    assert json.loads(out.read_text())["spec"]["radius"] == 3.0
    assert main(["render-path", "--checkpoint", str(tiny_policies[0]), "--path",
                 '{"name": "s", "shape": "straight"}', "--out", str(tmp_path / "s.mp4"),
                 "--config", str(cfg)]) == 0
    assert (tmp_path / "s.mp4").stat().st_size > 0


def test_cli_bad_path_is_one_line(tiny_policies, tmp_path, capsys) -> None:
    assert main(["evaluate", "--checkpoint", str(tiny_policies[0]), "--path", "spiral",
                 "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown shape 'spiral'" in err


def test_cross_track_distances_are_the_per_point_loops_bit_for_bit() -> None:
    """The broadcast form of the cross-track error: the same sums in the same order."""
    from quadpipe.evaluation.metrics import cross_track

    rng = np.random.default_rng(3)
    path, points = rng.normal(size=(1700, 2)), rng.normal(size=(700, 2))
    loop = np.array([np.sqrt(np.min(np.sum((path - p) ** 2, axis=1))) for p in points])
    np.testing.assert_array_equal(cross_track(points, path, rows=100), loop)


def test_progress_projected_for_all_walks_at_once_is_the_projector_point_by_point() -> None:
    """control.follower.project_walks gives each walk the arc lengths a fresh Projector returns
    point by point, bit for bit: paths of different lengths (a figure8's crossing, a short
    straight), walks of different lengths (falls), points off the path, past its end and beside
    its start."""
    from quadpipe.control.follower import Projector, project_walks

    rng = np.random.default_rng(4)
    expert, cfg = ExpertConfig(), EvalConfig(duration=30.0)
    q0 = start_qpos(build_model(expert, pd="torque"))
    paths, walks = [], []
    for name, length in (("figure8", 400), ("straight", 90), ("circle", 1), ("zigzag", 250)):
        path = place_target(parse_path(name), cfg, expert, q0)[0].path
        on = path.points(np.linspace(-0.2, path.length + 0.5, length))
        paths.append(path)
        walks.append(on + rng.normal(scale=0.15, size=on.shape))
    got = project_walks(paths, walks)
    for path, walk, arc in zip(paths, walks, got, strict=True):
        proj = Projector(path.s, path.xy)
        np.testing.assert_array_equal(arc, [proj.project(p) for p in walk])
    assert len(got[2]) == 1 and np.ptp(got[0]) > 5.0  # the walks covered their paths
