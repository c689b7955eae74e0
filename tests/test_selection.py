"""Closed-loop checkpoint selection: the candidate that walks best wins, whatever the job split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quadpipe.config import ExpertConfig
from quadpipe.control.closed_loop import Episodes, start_qpos
from quadpipe.control.follower import standing_controller
from quadpipe.evaluation import selection
from quadpipe.evaluation.episodes import CONDITIONS
from quadpipe.evaluation.selection import SelectConfig, SelectionError, choose, score_part
from quadpipe.learn.imitation.candidates import candidates
from quadpipe.learn.imitation.stages import StageError
from quadpipe.learn.policy import Policy
from quadpipe.learn.samples import ObsConfig
from quadpipe.sim.model import build_model
from quadpipe.sim.randomize import RandomizeConfig

EXPERT = ExpertConfig()
OBS = ObsConfig(50, 10, True, "heading", EXPERT.dt)  # 200 ms, waypoints every 40
# 1-s episodes and success = no fall: a robot that holds its pose succeeds, one that drops fails
QUICK = SelectConfig(episodes=3, seconds=1.0, success_progress=0.0)


def _holding_torque() -> np.ndarray:
    """The torques that hold the standing pose, once the expert's servos have settled it."""
    model = build_model(EXPERT, pd="torque")
    q0 = start_qpos(model)
    control = standing_controller(q0, EXPERT)
    one = np.array([0])
    with Episodes([model], q0, 1, 1) as sim:
        for k in range(500):
            u = control(k, one, sim.qpos[one], sim.qvel[one])
            sim.step(one, u)
    return u[0]


def _constant(torque: np.ndarray) -> tuple[dict, dict]:
    """A real policy network whose output is `torque` whatever it observes."""
    p = Policy(OBS.dim, 12, (16, 16))
    with torch.no_grad():
        p.net[-1].weight.zero_()
        p.net[-1].bias.zero_()
        p.out_mean.copy_(torch.as_tensor(torque, dtype=torch.float32))
    return {k: v.clone() for k, v in p.state_dict().items()}, p.architecture


@pytest.fixture(scope="module")
def stages() -> list[dict]:
    """Three stages: behaviour cloning and round 1 (no candidates) and round 2 whose epochs hold,
    drop (zero torque) and hold; the dropping one has the lowest validation loss."""
    hold, arch = _constant(_holding_torque())
    drop, _ = _constant(np.zeros(12))

    def stage(rnd, epochs, losses, models):
        rows = list(zip(epochs, losses, models, strict=True))
        return {"round": rnd, "epoch": epochs[-1], "seed": 0, "fingerprint": f"fp{rnd}",
                "architecture": arch, "model": models[-1],
                "history": [{"epoch": e, "valid_loss": v} for e, v, _ in rows],
                "epoch_models": [{"epoch": e, "model": m} for e, _, m in rows]}

    return [stage(0, [1, 2], [0.9, 0.8], [drop, drop]),
            stage(1, [3, 4], [0.9, 0.8], [drop, hold]),
            stage(2, [5, 6, 7], [0.7, 0.1, 0.6], [hold, drop, hold])]


def test_candidates_are_the_last_stages_epochs(stages) -> None:
    got = [(c.round, c.epoch, c.valid_loss) for c in candidates(stages)]
    assert got == [(2, 5, 0.7), (2, 6, 0.1), (2, 7, 0.6)]
    assert [c.epoch for c in candidates(stages[:1])] == [1, 2]  # plain cloning: its epochs
    with pytest.raises(StageError, match="rounds 0..R in order"):
        candidates(stages[1:])


def test_validation_episodes_cycle_the_conditions_on_their_own_stream() -> None:
    model = build_model(EXPERT, pd="torque")
    q0 = start_qpos(model)
    cfg = SelectConfig(episodes=6, seconds=8.0)
    eps = selection.episodes(cfg, RandomizeConfig(), EXPERT, q0)
    assert [e.condition for e in eps] == list(CONDITIONS) * 2
    assert eps[1].physics is not None and eps[0].physics is None and eps[3].physics is None
    assert eps[2].pushes and not eps[0].pushes
    # not the suite's episodes with the same seed: another stream
    from quadpipe.evaluation.suite import SuiteConfig, episode_plan

    suite = episode_plan(SuiteConfig(episodes=1, seconds=8.0, seed=cfg.seed), "nominal", EXPERT,
                         q0, 8000)
    assert suite[0]["speed"] != eps[0].speed


def test_selection_picks_the_candidate_that_walks_not_the_lowest_loss(stages, tmp_path) -> None:
    part = score_part(stages, OBS, EXPERT, QUICK, RandomizeConfig(), 0, 1,
                      tmp_path / "part_0_of_1.json")
    scores = {(c["round"], c["epoch"]): (c["successes"], c["falls"]) for c in part["candidates"]}
    assert scores[(2, 6)] == (0, 3)  # zero torque: drops in every episode
    assert scores[(2, 5)] == scores[(2, 7)] == (3, 0)
    sel = choose([tmp_path / "part_0_of_1.json"])
    assert (sel["chosen"]["round"], sel["chosen"]["epoch"]) != (2, 6)  # the lowest loss
    assert sel["chosen"]["successes"] == 3
    # among equals, the lower tracking error, then the later candidate
    holders = [c for c in sel["candidates"] if c["successes"] == 3]
    assert sel["chosen"] == min(holders, key=lambda c: (c["mean_tracking_error_m"],
                                                        -c["epoch"]))
    assert [c["index"] for c in sel["candidates"]] == [0, 1, 2]
    assert "episodes" not in sel["chosen"]


def test_the_choice_does_not_depend_on_the_job_split(stages, tmp_path) -> None:
    whole = score_part(stages, OBS, EXPERT, QUICK, RandomizeConfig(), 0, 1)
    files = []
    for part in (1, 0):  # any order
        f = tmp_path / f"part_{part}_of_2.json"
        score_part(stages, OBS, EXPERT, QUICK, RandomizeConfig(), part, 2, f)
        files.append(f)
    split = choose(files)
    by_index = {c["index"]: c for c in whole["candidates"]}
    for c in split["candidates"]:
        ref = by_index[c["index"]]
        assert c["mean_tracking_error_m"] == ref["mean_tracking_error_m"]  # bit for bit
        assert c["successes"] == ref["successes"]


def test_a_rerun_after_a_killed_job_gives_the_same_choice(stages, tmp_path) -> None:
    """A killed job leaves no part file (written atomically); its rerun matches the first run."""
    first = tmp_path / "a.json"
    score_part(stages, OBS, EXPERT, QUICK, RandomizeConfig(), 0, 1, first)
    killed = tmp_path / "b.json"
    killed.write_text(first.read_text()[:100])  # what a torn write would leave, if one could
    with pytest.raises(SelectionError, match="unreadable selection part"):
        choose([killed])
    score_part(stages, OBS, EXPERT, QUICK, RandomizeConfig(), 0, 1, killed)
    assert choose([killed])["chosen"] == choose([first])["chosen"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_parts_that_do_not_make_one_selection_are_refused(stages, tmp_path) -> None:
    f0, f1 = tmp_path / "p0.json", tmp_path / "p1.json"
    score_part(stages, OBS, EXPERT, QUICK, RandomizeConfig(), 0, 2, f0)
    with pytest.raises(SelectionError, match="not parts 0..1"):
        choose([f0])
    other = SelectConfig(episodes=3, seconds=1.0, success_progress=0.0, seed=5)
    score_part(stages, OBS, EXPERT, other, RandomizeConfig(), 1, 2, f1)
    with pytest.raises(SelectionError, match="config differs"):
        choose([f0, f1])
    with pytest.raises(SelectionError, match="no such selection part"):
        choose([tmp_path / "missing.json"])


def test_an_old_stage_without_epoch_weights_is_refused_with_the_fix(stages) -> None:
    old = {k: v for k, v in stages[2].items() if k != "epoch_models"}
    with pytest.raises(StageError, match="run that training stage again"):
        candidates([*stages[:2], old])


def test_rank_key_orders_success_then_falls_then_error() -> None:
    rows = [{"successes": 2, "falls": 0, "mean_tracking_error_m": 0.5, "round": 1, "epoch": 1},
            {"successes": 3, "falls": 0, "mean_tracking_error_m": 0.9, "round": 1, "epoch": 2},
            {"successes": 2, "falls": 1, "mean_tracking_error_m": 0.1, "round": 1, "epoch": 3},
            {"successes": 2, "falls": 0, "mean_tracking_error_m": 0.4, "round": 0, "epoch": 4}]
    assert [r["epoch"] for r in sorted(rows, key=selection.rank_key)] == [2, 4, 1, 3]


def test_the_selection_is_off_by_default_and_says_how_to_switch_it_on(stages) -> None:
    from quadpipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"select.episodes is 0.*set it \(e.g. 30\)"):
        score_part(stages, OBS, EXPERT, SelectConfig(), RandomizeConfig(), 0, 1)
