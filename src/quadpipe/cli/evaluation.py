"""CLI verbs of the evaluation stage: evaluate (a named path), render-path, suite and
suite-combine, select (the closed-loop checkpoint selection), eval-report."""

from __future__ import annotations

import argparse
import json

from quadpipe.cli.main import load_config, verb


def _eval_settings(path: str | None):
    from quadpipe.config import expert_config, from_mapping
    from quadpipe.evaluation.named import EvalConfig

    cfg = load_config(path)
    section = {k: v for k, v in (cfg.get("eval") or {}).items() if k != "paths"}
    return cfg, from_mapping(EvalConfig, section, "eval"), \
        expert_config(cfg)


def _path_spec(arg: str, cfg: dict, radius: float):
    """--path: a JSON path entry, a name from the config's eval.paths, or a built-in shape."""
    from quadpipe.control.paths import parse_path, parse_paths

    if arg.lstrip().startswith("{"):
        try:
            entry = json.loads(arg)
        except json.JSONDecodeError as exc:
            from quadpipe.errors import ConfigError

            raise ConfigError(f"--path is not valid JSON: {exc}") from exc
        return parse_path(entry, radius, "--path")
    listed = (cfg.get("eval") or {}).get("paths")
    if listed:
        for spec in parse_paths(listed, radius):
            if spec.name == arg:
                return spec
    return parse_path(arg, radius, "--path")


def _checkpoint_args(p: argparse.ArgumentParser, expert_alone: bool = False) -> None:
    """--checkpoint and --seeds; expert_alone: no checkpoint is allowed (a suite part of the
    expert alone)."""
    p.add_argument("--checkpoint", nargs="*" if expert_alone else "+", required=not expert_alone,
                   default=[],
                   help="policy checkpoints (best.pt), one per training seed, first seed first"
                   + ("; none: the expert alone (a part for suite-combine)" if expert_alone
                      else ""))
    p.add_argument("--seeds", nargs="+", type=int,
                   help="the training seed of each checkpoint (default 0, 1, ...)")


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    _checkpoint_args(p)
    p.add_argument("--path", required=True,
                   help="a path name from the config's eval.paths, a built-in shape (circle, "
                        "figure8, straight, zigzag, square, sine) or a JSON path entry")
    p.add_argument("--out", required=True, help="JSON of policy/expert/standing metrics")
    p.add_argument("--plot", help="top-view PNG")
    p.add_argument("--threads", type=int, default=1, help="simulation threads")
    p.add_argument("--baseline", nargs="*", default=[],
                   help="one more checkpoint per seed (the imitated policies), on the same path")
    p.add_argument("--config", help="YAML with eval and expert sections")


@verb("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> None:
    """Closed-loop evaluation of each seed's policy against the expert and standing still."""
    from quadpipe.evaluation.named import evaluate_path

    cfg, ev, expert = _eval_settings(args.config)
    spec = _path_spec(args.path, cfg, ev.radius)
    r = evaluate_path(args.checkpoint, spec, ev, expert, args.seeds, args.out, args.plot,
                      args.threads, args.baseline or None)
    for s in r["seeds"]:  # into each seed's training run, where train.logger asks for it
        _track(s["checkpoint"], s, f"eval/{spec.name}")
    row = {s["seed"]: {m: s[m] for m in ("mean_tracking_error_m", "fell")} for s in r["seeds"]}
    print(f"{spec.name}: expert {r['expert']['mean_tracking_error_m']:.3f} m, policy "
          f"{json.dumps(row)}")


def _track(checkpoint: str, metrics: dict, prefix: str) -> None:
    """Evaluation metrics of one checkpoint into its training run (learn.tracking)."""
    from quadpipe.learn.tracking import log_evaluation

    log_evaluation(checkpoint, metrics, prefix)


def _render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="policy checkpoint (best.pt)")
    p.add_argument("--path", required=True, help="as for `quadpipe evaluate`")
    p.add_argument("--out", required=True, help="mp4 to write")
    p.add_argument("--config", help="YAML with eval and expert sections")


@verb("render-path", _render_args)
def _render(args: argparse.Namespace) -> None:
    """A video of the policy following a path (eval.video_seconds of it)."""
    from quadpipe.evaluation.named import render_policy

    cfg, ev, expert = _eval_settings(args.config)
    print(render_policy(args.checkpoint, _path_spec(args.path, cfg, ev.radius), args.out, ev,
                        expert))


def _suite_args(p: argparse.ArgumentParser) -> None:
    _checkpoint_args(p, expert_alone=True)
    p.add_argument("--no-expert", action="store_true",
                   help="the policies without the expert (a part for suite-combine, joined with "
                   "a part that ran the expert on the same episodes)")
    p.add_argument("--condition", required=True,
                   help="nominal, randomized, pushes, fidelity or push_curve")
    p.add_argument("--baseline", nargs="*", default=[],
                   help="one more checkpoint per seed run on the same episodes (the imitated "
                   "policies a fine-tuning started from): compared with --checkpoint's")
    p.add_argument("--out", required=True, help="JSON of every episode and the aggregates "
                   "(with --parts: the part's episodes, for suite-combine)")
    p.add_argument("--part", type=int, default=0, help="this job's part of the episodes, 0-based")
    p.add_argument("--parts", type=int, default=None,
                   help="jobs the condition's episodes are split over; given (even 1), --out is "
                   "this part's file for suite-combine; without it, all episodes here and --out "
                   "the condition's JSON")
    p.add_argument("--threads", type=int, help="simulation threads (default: suite.threads)")
    p.add_argument("--config", help="YAML with suite and expert sections")


@verb("suite", _suite_args)
def _suite(args: argparse.Namespace) -> None:
    """The evaluation suite on one condition: random held-out paths, policy vs expert, paired."""
    import dataclasses

    from quadpipe.config import expert_config
    from quadpipe.data.dataset import write_json
    from quadpipe.errors import ConfigError
    from quadpipe.evaluation.suite import SuiteConfig, combine, run_part

    cfg = load_config(args.config)
    suite = SuiteConfig.from_mapping(cfg.get("suite"))
    if args.threads is not None:
        suite = dataclasses.replace(suite, threads=args.threads)
    seeds = args.seeds if args.seeds is not None else list(range(len(args.checkpoint)))
    if args.parts is None and (args.no_expert or not args.checkpoint):
        raise ConfigError("--no-expert or no --checkpoint: this job writes a part for "
                          "suite-combine; give --part and --parts")
    part = run_part(args.checkpoint, seeds, args.condition, suite,
                    expert_config(cfg),
                    args.baseline or None, args.part, args.parts or 1,
                    with_expert=not args.no_expert)
    if args.parts is not None:  # a part for suite-combine, as the workflow runs it
        write_json(part, args.out)
        print(f"{args.condition}: part {args.part} of {args.parts}, "
              f"{len(part['episodes'])} episodes -> {args.out}")
        return
    r = combine([part])
    write_json(r, args.out)
    _report_suite(r)


def _combine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parts", nargs="+", required=True, help="the condition's part JSONs")
    p.add_argument("--out", required=True, help="the condition's JSON")


@verb("suite-combine", _combine_args)
def _suite_combine(args: argparse.Namespace) -> None:
    """One suite condition's JSON from its parts (`quadpipe suite --part k --parts n`)."""
    from pathlib import Path

    from quadpipe.data.dataset import write_json
    from quadpipe.errors import ConfigError
    from quadpipe.evaluation.suite import combine

    parts = []
    for f in args.parts:
        try:
            parts.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{f}: not a readable suite part ({exc}); rerun its suite job"
                              ) from exc
    r = combine(parts)
    write_json(r, args.out)
    _report_suite(r)


def _report_suite(r: dict) -> None:
    """The condition's one-line summary, and each seed's figures to the tracker."""
    condition = r["condition"]
    for ckpt, s in zip(r["checkpoints"], r["policy"]["per_seed"], strict=True):
        _track(ckpt, s, f"suite/{condition}")
    pol, exp = r["policy"]["pooled"], r["expert"]
    print(f"{condition}: success policy {pol['successes']}/{pol['n']}, expert "
          f"{exp['successes']}/{exp['n']}; median error ratio {r['ratio']['median']}")
    if "vs_baseline" in r:
        v = r["vs_baseline"]
        print(f"{condition}: vs baseline: success diff {v['success_diff']:+.3f} "
              f"{v['success_diff_ci95']}, median error ratio {v['ratio']['median']}")


def _select_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", nargs="+", required=True,
                   help="one seed's training-stage files, rounds 0..R in order")
    p.add_argument("--dataset", required=True, help="the dataset (for its expert settings)")
    p.add_argument("--part", type=int, default=0, help="this job's part, 0-based")
    p.add_argument("--parts", type=int, default=1, help="jobs the candidates are split over")
    p.add_argument("--out", required=True, help="the part's JSON (per candidate and episode)")
    p.add_argument("--config", help="YAML with train (observation keys, seed), select and "
                   "randomize sections")


@verb("select", _select_args)
def _select(args: argparse.Namespace) -> None:
    """Roll out one part of a seed's candidate checkpoints on the selection's episodes."""
    from quadpipe.config import from_mapping
    from quadpipe.evaluation.selection import SelectConfig, score_part
    from quadpipe.learn.imitation.prepare import dataset_expert
    from quadpipe.learn.imitation.stages import load_state
    from quadpipe.learn.imitation.train_config import TrainConfig
    from quadpipe.sim.randomize import RandomizeConfig

    cfg = load_config(args.config)
    train = from_mapping(TrainConfig, cfg.get("train"), "train")
    sel = SelectConfig.from_mapping(cfg.get("select"))
    stages = [load_state(f) for f in args.stage]
    expert = dataset_expert(args.dataset)
    got = score_part(stages, train.obs_at(expert.dt), expert, sel,
                     RandomizeConfig.from_mapping(cfg.get("randomize")), args.part, args.parts,
                     args.out)
    for c in got["candidates"]:
        print(f"round {c['round']} epoch {c['epoch']}: {c['successes']}/{c['n']} successes, "
              f"{c['falls']} falls, mean tracking error {c['mean_tracking_error_m']:.3f} m")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paths", nargs="*", default=[], help="named-path JSONs (results/eval/*.json)")
    p.add_argument("--suite", nargs="*", default=[], help="suite JSONs, one per condition")
    p.add_argument("--table-html", required=True, help="named-path table page")
    p.add_argument("--table-csv", required=True, help="named-path table CSV")
    p.add_argument("--suite-html", help="suite page (needs --suite)")
    p.add_argument("--suite-csv", help="suite table CSV")
    p.add_argument("--headline", help="reStructuredText headline table for the report's front page")
    p.add_argument("--headline-md", help="the headline in Markdown with the machine it ran on "
                   "(what README.md quotes: docs/update_headline.py)")


@verb("eval-report", _report_args)
def _eval_report(args: argparse.Namespace) -> None:
    """Tables and pages of the evaluation: per path, per suite condition, and the headline."""
    from quadpipe.evaluation.tables import write_reports

    for name, path in write_reports(args.paths, args.suite, args.table_html, args.table_csv,
                                    args.suite_html, args.suite_csv, args.headline).items():
        print(f"{name}: {path}")
    if args.headline_md:
        from pathlib import Path

        from quadpipe.evaluation.headline import headline_markdown, machine
        from quadpipe.evaluation.tables import load_results

        Path(args.headline_md).write_text(headline_markdown(
            load_results(args.paths), load_results(args.suite), machine()))
        print(f"headline_md: {args.headline_md}")
