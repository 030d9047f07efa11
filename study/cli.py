"""`study ...` entry points."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from study.errors import SpecError

DEFAULT_RESULTS = os.environ.get("STUDY_RESULTS", "results")


def _round_table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "round",
        "lineage",
        "% remaining",
        "early-stop it (val)",
        "val acc",
        "test acc @ES (reported)",
        "final test acc",
        "wall s",
    ):
        table.add_column(col, justify="right")
    return table


def _add_round(table: Table, r) -> None:
    table.add_row(
        str(r.round),
        r.branch or "trunk",
        f"{r.remaining_pct:.1f}",
        str(r.early_stop_iteration),
        f"{r.val_acc:.4f}",
        f"{r.test_acc:.4f}",
        f"{r.final_test_acc:.4f}",
        f"{r.wall_seconds:.1f}",
    )


def cmd_lineage(args: argparse.Namespace, console: Console) -> int:
    from tqdm import tqdm

    from study.engine.lineage import RunContext
    from study.engine.plan import describe_plan, total_iterations
    from study.engine.spec import load_lineage_spec
    from study.lake.recorder import LakeLineage
    from study.lake.store import normalize_root

    spec = load_lineage_spec(args.spec)
    if args.seed is not None:
        spec = spec.replace(seed=args.seed)
    if args.strategy is not None:
        spec = spec.replace(strategy=args.strategy)
    bar = None
    title = f"{spec.strategy} lineage {args.trial or spec.lineage_id()} (study {args.study})"
    table = _round_table(title)

    def on_round(r) -> None:
        _add_round(table, r)
        if bar is not None:
            bar.write(
                f"round {r.round}{f' ({r.branch})' if r.branch else ''}: {r.remaining_pct:.1f}% remaining, early stop {r.early_stop_iteration}, "
                f"val acc {r.val_acc:.4f}, test acc {r.test_acc:.4f}"
            )

    _check_run_flags(args)
    # every check (names, lake, identity, data, model, checkpoint) passes before anything is shown or written
    context = RunContext(
        device=args.device,
        threads=args.threads,
        on_progress=lambda n: bar.update(n) if bar is not None else None,
        pack=False,  # its trainings run one after another
    )
    lineage = LakeLineage(
        spec, args.results, study=args.study, trial_id=args.trial, context=context, on_round=on_round, fresh=args.fresh
    ).open()
    plan = lineage.lineage.plan
    console.print(describe_plan(spec, plan))
    bar = tqdm(
        total=total_iterations(spec, plan),
        unit="it",
        dynamic_ncols=True,
        disable=args.quiet,
        file=sys.stderr,
        initial=sum(r.iterations for r in lineage.previous),
    )
    try:
        rounds = lineage.lineage.previous_rounds + list(lineage)
    finally:
        bar.close()
    rows = [row for r in rounds for row in r.rows]
    if len(table.rows) < len(rows):  # resumed: earlier runs' too
        table = _round_table(title)
        for row in sorted(rows, key=lambda r: (r.round, r.branch or "")):
            _add_round(table, row)
    console.print(table)
    console.print(
        f"results: {normalize_root(args.results)}   (early stop and val acc: validation split; "
        f"test acc: reported at the early-stop iteration)"
    )
    return 0


def _check_run_flags(args: argparse.Namespace) -> None:
    """--threads and --device, named in one line before anything loads."""
    import torch

    limit = 4 * (os.cpu_count() or 1)
    if args.threads is not None and not 1 <= args.threads <= limit:
        raise SpecError(f"--threads must be between 1 and {limit} (4 x this machine's cores), got {args.threads}")
    if args.device is None:
        return
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise SpecError(f"--device {args.device!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise SpecError(f"--device {args.device}: lineages train on cpu or cuda; use one of those")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {args.device}: this machine has no usable CUDA device; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SpecError(f"--device {args.device}: only {torch.cuda.device_count()} CUDA device(s) here")


def cmd_tune(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    from study.search.study_spec import load_study_spec

    study = load_study_spec(args.space)  # every check runs before Ray starts
    if args.results is not None:
        study = dataclasses.replace(study, storage=dataclasses.replace(study.storage, results=args.results))
        study.validate()
    import logging

    from study.search.progress import StudyProgress
    from study.search.tune import run_study

    logging.getLogger("ray").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own banners; `study tune` draws its own table
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.address or os.environ.get("RAY_ADDRESS"):
        from study.search.preflight import check_address

        check_address(args.address or os.environ["RAY_ADDRESS"])  # before Ray retries an absent cluster for minutes
    metric, mode = study.objective.metrics[0], study.objective.modes[0]
    finished, failed = _trials_so_far(study)
    if finished + failed >= study.budget.num_samples:
        console.print(
            f"study {study.name} is finished ({finished} trials complete, {failed} failed, budget "
            f"{study.budget.num_samples}); its results:",
            highlight=False,
        )
    if study.resources.pack == "auto" and 0 < study.resources.lineage_gpu < 1 and not study.model_packs():
        console.print(f"note: {study.pack_verdict()[1]}: its lineages train alone, each holding its GPU share")
    progress = StudyProgress(metric, mode, study.budget.num_samples, console, finished=finished, failed=failed)
    where = f"the Ray cluster at {args.address}" if args.address else "a local Ray instance"
    outcome = run_study(
        study,
        address=args.address,
        callbacks=[progress],
        announce=lambda: console.print(
            f"study {study.name}: {study.budget.num_samples} trials x {len(study.seeds)} seed(s), objective "
            f"{study.objective.name} on validation data, sampler {study.sampler}, on {where}"
        ),
    )
    console.print()
    _print_outcome(console, study, outcome)
    return 0 if outcome.errors == 0 else 1


def _trials_so_far(study) -> tuple[int, int]:  # noqa: ANN001  (a StudySpec)
    """(complete, failed) trials the study's Optuna journal already holds (0, 0: a new study, or a
    database, which the preflight checks first)."""
    import optuna

    from study.search.tune import optuna_storage, optuna_url, prepare

    url = optuna_url(prepare(study))
    if "://" in url or not os.path.exists(url):
        return 0, 0
    try:
        trials = optuna.load_study(study_name=study.name, storage=optuna_storage(url)).trials
    except (KeyError, ValueError, OSError, RuntimeError):  # no such study yet, or a store that does not answer
        return 0, 0
    states = [t.state.name for t in trials]
    return states.count("COMPLETE"), states.count("FAIL")


def _print_outcome(console: Console, study, outcome) -> None:
    states: dict[str, int] = {}
    for t in outcome.trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    console.print("optuna trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    title = "Pareto set" if study.objective.multi else "best configuration"
    table = Table(title=f"{title} (selected on validation data; test accuracy reported only)", title_justify="left")
    labels = _trial_labels(outcome.results_root, study.name)
    table.add_column("configuration", no_wrap=True, min_width=max([len(v) for v in labels.values()], default=12))
    for metric in study.objective.metrics:
        table.add_column(f"{metric} (val)", justify="right")
    table.add_column("% left at selected round", justify="right")
    table.add_column("test acc there (reported)", justify="right")
    for t in outcome.best:
        rep = t.get("reported") or {}
        table.add_row(
            labels.get(t["number"], f"#{t['number']} " + " ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items())),
            *[_fmt(v) for v in t["values"]],
            _fmt(rep.get("remaining_pct_at_selected")),
            _fmt(rep.get("test_acc_at_selected"), 3),
        )
    console.print(table)
    failed = [t for t in outcome.trials if t["state"] == "FAIL"]
    if failed:
        ftable = Table(title="trials that failed (never eligible as best)", title_justify="left")
        for col in ("optuna trial", "configuration", "why"):
            ftable.add_column(col)
        for t in failed:
            ftable.add_row(
                str(t["number"]),
                labels.get(t["number"], ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(t["params"].items()))),
                t.get("failure") or "the trial raised (see the lineages table and Tune's log)",
            )
        console.print(ftable)
    console.print(
        f"results lake: {outcome.results_root}   (its findings: study results --results {outcome.results_root} "
        f"--study {study.name})",
        highlight=False,
    )
    console.print(f"tune experiment: {outcome.tune_path}")
    console.print(f"optuna storage: {outcome.optuna_storage}")
    if outcome.errors:
        console.print(f"[red]{outcome.errors} trial(s) failed for good; their finished rounds are in the lake[/red]")


def _trial_labels(root: str, study: str) -> dict[int, str]:
    """Optuna trial number -> its configuration's readable name and id, as every view shows it."""
    from study.app.lake import load_lake

    lin = load_lake(root, study).lineages
    if lin.empty:
        return {}
    trunks = lin[lin["branch"].isna() & lin["optuna_trial_number"].notna()]
    return {
        int(n): f"{label} ({cid})"
        for n, label, cid in zip(
            trunks["optuna_trial_number"], trunks["config_label"], trunks["config_id"], strict=True
        )
    }


def _fmt(v, digits: int = 4) -> str:  # noqa: ANN001
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return "-" if v is None else str(v)


def _k8s_options(args: argparse.Namespace):
    """K8sOptions from whichever `study k8s` flags the subcommand has (a flag is named after its
    field, but for the three below)."""
    import dataclasses

    from study.deploy.k8s import K8sOptions

    renamed = {"pre_running_deadline_seconds": "pre_running_deadline", "db_wait_seconds": "db_wait", "pvc_size": "size"}
    values = {}
    for f in dataclasses.fields(K8sOptions):
        flag = renamed.get(f.name, f.name)
        if hasattr(args, flag):
            values[f.name] = getattr(args, flag)
    return K8sOptions(**values)


def _emit_manifests(objects: list, args: argparse.Namespace, console: Console) -> int:
    from study.deploy.k8s import dump, write_kustomization

    if args.out_dir:
        written = write_kustomization(objects, args.out_dir)
        console.print(f"{len(written)} files in {args.out_dir} (kubectl apply -k {args.out_dir})")
    else:
        sys.stdout.write(dump(objects))
    return 0


def cmd_k8s_render(args: argparse.Namespace, console: Console) -> int:
    from study.deploy.k8s import capacity_warning, plugin_notice, render
    from study.search.study_spec import load_study_spec

    opts = _k8s_options(args)
    study = load_study_spec(args.space)
    notice = plugin_notice(study)
    objects = render(args.space, opts)
    warning = capacity_warning(study, opts)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    return _emit_manifests(objects, args, console)


def cmd_k8s_storage(args: argparse.Namespace, console: Console) -> int:
    from study.deploy.k8s import storage_objects

    return _emit_manifests(storage_objects(args.name, _k8s_options(args)), args, console)


def cmd_k8s_app(args: argparse.Namespace, console: Console) -> int:
    from study.deploy.k8s import app_objects

    return _emit_manifests(app_objects(_k8s_options(args), args.replicas), args, console)


def cmd_k8s_stage_data(args: argparse.Namespace, console: Console) -> int:
    from study.deploy.k8s import staging_objects

    return _emit_manifests(staging_objects(args.dataset, _k8s_options(args), args.download), args, console)


def cmd_stage_data(args: argparse.Namespace, console: Console) -> int:
    from study.engine.data.vision import stage_dataset

    folder = stage_dataset(args.dataset, args.to, download=args.download)
    console.print(f"{args.dataset}: files in {folder} (point $STUDY_DATA_DIR at {args.to})")
    return 0


def _lake_root(args: argparse.Namespace) -> str:
    """The lake root: `--results`, or the older positional spelling of it (not both, unless equal)."""
    given = getattr(args, "root", None)
    if given is not None and args.results is not None and given != args.results:
        raise SpecError(f"two lake roots given ({given} and --results {args.results}); pass only --results")
    return args.results or given or DEFAULT_RESULTS


def cmd_results(args: argparse.Namespace, console: Console) -> int:
    from study.analysis.summary import summarize
    from study.app.lake import load_lake
    from study.cli_tables import OutputFormat, emit, hanging
    from study.cli_views import configuration_table, open_commands, paired_table, study_lines
    from study.lake.compact import lake_studies
    from study.lake.store import normalize_root

    given = _lake_root(args)
    root = normalize_root(given)
    try:
        known = lake_studies(root)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}; pass the lake's root, or fill one with `study lineage SPEC.yaml --results {given}`"
        ) from None
    if args.study is not None and args.study not in known:
        raise FileNotFoundError(f"study {args.study!r} is not in {root}; studies there: {', '.join(known) or 'none'}")
    lake = load_lake(root, args.study)
    summary = summarize(lake.rounds, lake.lineages, lake.studies, lake.skipped)
    for s in summary.skipped:
        print(f"skipped unreadable file: {s}", file=sys.stderr)
    if not summary.configurations:
        if summary.skipped:
            console.print(
                f"no readable rounds under {root}: {len(summary.skipped)} unreadable file(s) skipped, named above"
            )
            return 2
        console.print(f"no rounds under {root} yet (lineages are registered; their rounds land as they finish)")
        return 0
    fmt = OutputFormat(args.format)
    outputs = [configuration_table(summary, root), paired_table(summary)]
    lines = study_lines(summary.studies[args.study], summary.findings.get(args.study), root) if args.study else []
    if lines:
        lines += ["", *open_commands(args.study, root)]
    if fmt is OutputFormat.TABLE:
        for line in lines:
            text = line if line.startswith(("report:", "app:")) else hanging(line, console.width)
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        emit(outputs, fmt, console)
        if not args.study:
            console.print(f"a study's findings: study results --results {root} --study NAME", highlight=False)
    else:
        emit(outputs, fmt, console, extra={"study": lines} if lines else None)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from study.app.lake import load_lake
    from study.app.report import write_report
    from study.lake.compact import lake_studies
    from study.lake.store import normalize_root

    root = normalize_root(args.results)
    known = lake_studies(root)  # a missing lake or bucket is one line here
    if args.study not in known:
        raise FileNotFoundError(f"study {args.study!r} is not in {root}; studies there: {', '.join(known) or 'none'}")
    path = write_report(load_lake(root, args.study), args.study, args.out)
    console.print(f"report of study {args.study}: {path} ({path.stat().st_size / 1e6:.1f} MB, opens offline)")
    return 0


def cmd_compact(args: argparse.Namespace, console: Console) -> int:
    from study.lake.compact import compact
    from study.lake.files import check_name

    try:
        check_name("study", args.study)
    except ValueError as e:
        raise SpecError(str(e)) from None
    from study.lake.store import normalize_root

    written = compact(normalize_root(_lake_root(args)), args.study, force=args.force)
    for strategy, n in written.items():
        console.print(f"{args.study}/{strategy}: {n} rows in one file")
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from study.cli_tables import OutputFormat, emit
    from study.cli_views import plan_tables
    from study.engine.plan import pack_verdict, plan_lineage, round_iterations, total_iterations
    from study.engine.registry import strategy
    from study.engine.spec import load_lineage_spec
    from study.typed_yaml import load_yaml

    raw = load_yaml(args.spec)
    study = None
    if isinstance(raw, dict) and "study" in raw:
        from study.search.study_spec import load_study_spec

        study = load_study_spec(args.spec)
        spec = study.base_spec()
    else:
        spec = load_lineage_spec(args.spec)
    plan = plan_lineage(spec)
    estimate, why = None, "--no-estimate"
    if not args.no_estimate:
        from study.engine.estimate import measure

        try:
            estimate = measure(
                spec, threads=int(study.resources.cpu) if study else 1
            )  # a lineage runs on 1 thread unless asked
        except (SpecError, FileNotFoundError, OSError) as e:  # a dataset not on this machine: no estimate
            why = str(e).splitlines()[0]
    groups = []
    for group, members in plan.groups.items():
        weights = plan.counts[0][group]
        groups.append(
            {
                "group": group,
                "layers": ", ".join(members),
                "weights": weights,
                "rate per round": plan.rates[group],
                "kept at last round": plan.counts[-1][group],
                "% kept at last round": 100.0 * plan.counts[-1][group] / weights if weights else None,
                "kept per round": [c[group] for c in plan.counts],
            }
        )
    rounds = [
        {
            "round": r,
            "% remaining": plan.remaining_pct(i),
            "weights kept": sum(plan.counts[i].values()) + plan.total_weights - sum(plan.counts[0].values()),
            "iterations": round_iterations(spec, plan, r),
            "est. minutes": None if estimate is None else estimate.round_seconds(spec, plan, r) / 60,
        }
        for i, r in enumerate(plan.rounds)
    ]
    title = f"{spec.strategy} {spec.model} on {spec.dataset} ({spec.prune.scope})"
    outputs = plan_tables(groups, rounds, title)
    lines = _plan_lines(spec, plan, estimate, why, study, total_iterations(spec, plan))
    packs, pack_why = pack_verdict(spec)
    lines.append(
        "packing: its trainings may train stacked (packed)" if packs else f"packing: trains alone ({pack_why})"
    )
    fmt = OutputFormat(args.format)
    if fmt is OutputFormat.TABLE:
        console.print(f"strategy {spec.strategy}: {strategy(spec.strategy).summary}", highlight=False)
        emit(outputs, fmt, console)
        for line in lines:
            console.print(line, highlight=False, markup=False)
    else:
        emit(outputs[::-1], fmt, console, extra={"summary": lines})
    return 0


def cmd_ticket_export(args: argparse.Namespace, console: Console) -> int:
    from study.engine.tickets import load_ticket
    from study.lake.artifacts import export_ticket
    from study.lake.store import normalize_root

    path = export_ticket(normalize_root(args.results), args.study, args.trial, args.round, args.out)
    ticket = load_ticket(path)
    meta, trained = ticket.meta, "with" if ticket.trained is not None else "without"
    console.print(
        f"ticket of {meta['model']} on {meta['dataset']}, trial {args.trial} round {args.round} "
        f"({meta['remaining_pct']:.1f}% of weights, θ_k at iteration {meta['rewind_iteration']}, {trained} trained "
        f"weights): {path} ({path.stat().st_size / 1e6:.1f} MB; study.load_ticket or torch.load(weights_only=True))"
    )
    return 0


def _plan_lines(spec, plan, estimate, why: str, study, iterations: int) -> list[str]:  # noqa: ANN001
    """The plan's totals: the lineage id, its iterations, and the measured time estimate (a
    study: over all its lineages, as many at once as its cores and concurrency allow)."""
    from study.analysis.configs import sig

    out = [f"lineage id {spec.lineage_id()}, {iterations:,} training iterations in all"]
    if study is not None:
        searched = ", ".join(study.search)
        out.append(
            f"study {study.name}: the plan of its base lineage; it searches {searched} (which change the rounds' "
            f"sparsity and time), {study.budget.num_samples} trials x {len(study.seeds)} seeds = "
            f"{study.budget.num_samples * len(study.seeds)} lineages"
        )
    if estimate is None:
        out.append(f"no time estimate ({why})")
        return out
    minutes = estimate.lineage_seconds(spec, plan) / 60
    out.append(
        f"estimated {sig(minutes, 2)} min per lineage on this machine ({estimate.device}, {estimate.threads} thread(s): "
        f"{sig(estimate.step_seconds * 1000, 2)} ms per iteration, {sig(estimate.eval_seconds, 2)} s per evaluation, "
        f"timed now{', in CPU time: on cores of its own' if estimate.device == 'cpu' else ''})"
    )
    if study is not None:
        lineages = study.budget.num_samples * len(study.seeds)
        cores = os.cpu_count() or 1
        slots = max(1, cores // max(int(study.resources.cpu), 1))
        if study.max_concurrent:
            slots = min(slots, study.max_concurrent * len(study.seeds))
        out.append(
            f"the study: {lineages} lineages, {slots} at a time on {cores} cores: about {sig(minutes * lineages / slots, 2)} min"
        )
    return out


def cmd_baselines(args: argparse.Namespace, console: Console) -> int:
    from study.engine.data import DATASETS
    from study.engine.data.parsing import BASELINE_NAMES, baseline_f1, binarized, corpus_f1

    if not 1 <= args.sentences <= 100_000:
        raise SpecError(f"--sentences must be in 1..100000, got {args.sentences}")
    table = Table(
        title=f"Parse F1 of trivial trees on {args.sentences} generated sentences (seed {args.seed})",
        title_justify="left",
    )
    for column in ("dataset", "mean length", *BASELINE_NAMES, "gold, binarized"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, dataset in DATASETS.items():
        if dataset.trees is None:
            continue
        sentences = [s for s in dataset.trees(args.sentences, args.seed) if s.tree is not None]
        trees, lengths = [s.tree for s in sentences], [len(s.tokens) for s in sentences]
        scores = baseline_f1(trees, lengths)
        ceiling = corpus_f1([binarized(t) for t in trees], trees, lengths)
        table.add_row(
            name, f"{sum(lengths) / len(lengths):.1f}", *[f"{scores[b]:.3f}" for b in BASELINE_NAMES], f"{ceiling:.3f}"
        )
    console.print(table)
    console.print("unlabelled sentence-level F1, single-word and whole-sentence spans ignored (as for the models)")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the rule for every error of the CLI)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} -h`\n")


def _results_option(p: argparse.ArgumentParser) -> None:
    """The lake root, spelled `--results` by every command (a bare path is still taken here)."""
    p.add_argument("root", nargs="?", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--results", default=None, help=f"results lake root, a folder or s3://... (default: {DEFAULT_RESULTS})"
    )


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format", default="table", choices=["table", "csv", "json"], help="table (default), csv or json for scripts"
    )


def build_parser() -> argparse.ArgumentParser:
    from study.version import code_version

    ap = OneLineParser(
        prog="study", description="Lottery-ticket studies: IMP lineages, searches and their results lake"
    )
    ap.add_argument("--version", action="version", version=f"study {_package_version()} (code {code_version()})")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("lineage", help="run one lineage from a YAML spec (resumes if interrupted)")
    p.add_argument("spec")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results lake root (default: %(default)s)")
    p.add_argument("--study", default="adhoc", help="study name the rows are filed under")
    p.add_argument("--trial", default=None, help="trial id (default: the lineage's content hash)")
    p.add_argument("--seed", type=int, default=None, help="override the spec's seed")
    p.add_argument("--strategy", default=None, help="override the spec's strategy")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1; rows depend on it, never on the machine)"
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start at round 0")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("tune", help="run a study (Optuna search of lineages on Ray Tune); re-run to resume")
    p.add_argument("space", help="a study YAML, e.g. search_spaces/studies/fashion_mnist_demo.yaml")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--results", default=None, help="override storage.results (the lake root)")
    p.set_defaults(func=cmd_tune)

    k8s = sub.add_parser("k8s", help="Kubernetes (KubeRay) manifests").add_subparsers(dest="k8s_command", required=True)
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--image", default="lottery-study:0.1.0", help="the image built from k8s/Dockerfile, with its tag"
    )
    common.add_argument("--namespace", default=None)
    common.add_argument("--mount-path", default="/mnt/lake", help="where the shared volume is mounted on every pod")
    common.add_argument("--existing-claim", default=None, help="the lake's ReadWriteMany claim (`study k8s storage`)")
    common.add_argument("--service-account", default=None, help="every pod's service account (workload identity)")
    common.add_argument("--results", default=None, help="s3://bucket/prefix for the results lake (default: the volume)")
    common.add_argument("--s3-endpoint", default=None, help="an S3-compatible endpoint URL (MinIO, Ceph...)")
    common.add_argument(
        "--s3-secret",
        default=None,
        help="a Secret with keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (else an IAM role)",
    )
    common.add_argument(
        "--out-dir", default=None, help="write one file per object and a kustomization.yaml here (kubectl apply -k)"
    )
    p = k8s.add_parser(
        "render",
        parents=[common],
        help="print the manifests that run one study on KubeRay (pipe to kubectl apply -f -)",
    )
    p.add_argument("space", help="a study YAML")
    p.add_argument(
        "--profile", default="gpu", choices=["gpu", "cpu-dev"], help="worker groups: GPU + CPU, or small CPU only"
    )
    p.add_argument("--gpus", type=int, default=4, help="most GPU worker pods the autoscaler may start (profile gpu)")
    p.add_argument("--gpus-per-worker", type=int, default=1)
    p.add_argument(
        "--worker-cpus", type=int, default=None, help="CPUs of a worker pod (default: 8 per GPU; 2 on cpu-dev)"
    )
    p.add_argument(
        "--worker-memory", default=None, help="memory of a worker pod (default: 48Gi per GPU; 6Gi on cpu-dev)"
    )
    p.add_argument(
        "--max-workers", type=int, default=4, help="most pods of the CPU worker group (default: %(default)s)"
    )
    p.add_argument("--head-cpus", type=int, default=2, help="CPUs of the head pod (the driver; it runs no trials)")
    p.add_argument("--head-memory", default="8Gi", help="memory of the head pod (default: %(default)s)")
    p.add_argument("--kind", default="rayjob", choices=["rayjob", "raycluster"])
    p.add_argument("--config-dir", default="/etc/study", help="where the study YAML is mounted on the head")
    p.add_argument("--tune-storage", default=None, help="s3://bucket/prefix for Tune experiments")
    p.add_argument(
        "--postgres", default=None, help="'bundled' (a StatefulSet) or postgresql://USER@host/db (no password)"
    )
    p.add_argument("--postgres-secret", default=None, help="the Secret (key 'password') of an external --postgres")
    p.add_argument(
        "--db-wait", type=int, default=300, help="seconds the driver waits for the database (default: %(default)s)"
    )
    p.add_argument("--auth-token-secret", default=None, help="turn on Ray's token authentication with this Secret")
    p.add_argument(
        "--pre-running-deadline",
        type=int,
        default=1800,
        help="seconds a job may wait for its cluster (default: %(default)s)",
    )
    p.add_argument(
        "--submission",
        default=None,
        help="a new RayJob name per submission, e.g. 2 (re-applying a finished one does nothing)",
    )
    p.add_argument(
        "--operator-namespace",
        default="default",
        help="the KubeRay operator's namespace, let through to the dashboard port (default: %(default)s)",
    )
    p.set_defaults(func=cmd_k8s_render)

    p = k8s.add_parser("storage", help="print the lake's ReadWriteMany claim, made once apart from any study")
    p.add_argument("name", help="the claim's name, e.g. team-lake")
    p.add_argument("--storage-class", required=True, help="a ReadWriteMany storage class (NFS, CephFS, EFS...)")
    p.add_argument("--size", default="100Gi", help="the claim's size (default: %(default)s)")
    p.add_argument("--namespace", default=None)
    p.add_argument("--out-dir", default=None, help="write one file per object and a kustomization.yaml here")
    p.set_defaults(func=cmd_k8s_storage)

    p = k8s.add_parser("app", parents=[common], help="print the Streamlit app (Deployment + Service) reading the lake")
    p.add_argument("--replicas", type=int, default=1)
    p.set_defaults(func=cmd_k8s_app)

    p = k8s.add_parser("stage-data", parents=[common], help="print a Job that puts a dataset on the shared volume")
    p.add_argument("dataset", help="a dataset name, e.g. fashion_mnist")
    p.add_argument("--download", action="store_true", help="download it (the cluster must be online)")
    p.set_defaults(func=cmd_k8s_stage_data)

    p = sub.add_parser("stage-data", help="copy a dataset's files into a folder ($STUDY_DATA_DIR of the pods)")
    p.add_argument("dataset", help="a dataset name, e.g. fashion_mnist")
    p.add_argument("--to", required=True, help="the folder, e.g. /mnt/lake/datasets")
    p.add_argument("--download", action="store_true", help="download it when no copy is found here")
    p.set_defaults(func=cmd_stage_data)

    p = sub.add_parser("plan", help="what a lineage or study YAML will run: layers, rounds, exact counts, time")
    p.add_argument("spec", help="a lineage YAML or a study YAML (its base lineage)")
    p.add_argument("--no-estimate", action="store_true", help="skip the timed training steps of the time estimate")
    _format_option(p)
    p.set_defaults(func=cmd_plan)

    ticket = sub.add_parser("ticket", help="winning tickets of the results lake").add_subparsers(
        dest="ticket_command", required=True
    )
    p = ticket.add_parser("export", help="write a round's ticket (mask, θ_k, trained weights if kept) to one file")
    p.add_argument("study")
    p.add_argument("--trial", required=True, help="the trial id of the lineage (its trunk)")
    p.add_argument("--round", type=int, required=True, help="the round whose mask the ticket carries")
    p.add_argument("--out", required=True, help="the file to write, e.g. ticket.pt")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results lake root (default: %(default)s)")
    p.set_defaults(func=cmd_ticket_export)

    p = sub.add_parser("baselines", help="parse F1 of the trivial trees on every corpus with gold trees")
    p.add_argument("--sentences", type=int, default=2000, help="sentences generated per corpus (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="the generator's seed (default: %(default)s)")
    p.set_defaults(func=cmd_baselines)

    p = sub.add_parser("results", help="one row per configuration of what the lake holds; --study: its findings")
    _results_option(p)
    p.add_argument("--study", default=None, help="one study: its objective, space, trials and findings")
    _format_option(p)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("compact", help="rewrite a finished study's round files into one file per strategy")
    _results_option(p)
    p.add_argument("--study", required=True)
    p.add_argument("--force", action="store_true", help="compact even with lineages still running")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("report", help="write a study's report: one static HTML file that opens offline")
    p.add_argument("study")
    p.add_argument("--out", required=True, help="the HTML file to write (outside the lake), e.g. report.html")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results lake root (default: %(default)s)")
    p.set_defaults(func=cmd_report)
    return ap


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lottery-study")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    from study.cli_tables import console as make_console

    args = build_parser().parse_args(argv)
    console = make_console()
    try:
        return args.func(args, console)
    except (SpecError, RuntimeError, FileNotFoundError) as e:
        from study.engine.failures import LineageFailure

        kind = e.status if isinstance(e, LineageFailure) else "error"
        print(f"{kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except OSError as e:  # a store that fails mid-command (an S3 endpoint gone, keys revoked)
        from study.lake.store import storage_error

        text = (
            str(storage_error(e)) if "AWS Error" in str(e) else (str(e).strip().splitlines() or [type(e).__name__])[0]
        )
        print(f"error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished rounds are in the lake; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
