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
    )
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
        results = list(lineage.previous) + list(lineage)
    finally:
        bar.close()
    if len(table.rows) < len(results) + len(lineage.lineage.state.branch_results):  # resumed: earlier runs' too
        table = _round_table(title)
        for r in sorted([*results, *lineage.lineage.state.branch_results], key=lambda r: (r.round, r.branch or "")):
            _add_round(table, r)
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

    metric, mode = study.objective.metrics[0], study.objective.modes[0]
    if study.resources.pack == "auto" and 0 < study.resources.lineage_gpu < 1 and not study.model_packs():
        console.print(f"note: {study.pack_verdict()[1]}: its lineages train alone, each holding its GPU share")
    progress = StudyProgress(metric, mode, study.budget.num_samples, console)
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


def _print_outcome(console: Console, study, outcome) -> None:
    states: dict[str, int] = {}
    for t in outcome.trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    console.print("optuna trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    title = "Pareto set" if study.objective.multi else "best configuration"
    table = Table(title=f"{title} (selected on validation data; test accuracy reported only)", title_justify="left")
    table.add_column("optuna trial", justify="right")
    params = sorted({k for t in outcome.best for k in t["params"]})
    for name in params:
        table.add_column(name, justify="right")
    for metric in study.objective.metrics:
        table.add_column(f"{metric} (val)", justify="right")
    table.add_column("% left at selected round", justify="right")
    table.add_column("test acc there (reported)", justify="right")
    for t in outcome.best:
        rep = t.get("reported") or {}
        table.add_row(
            str(t["number"]),
            *[_fmt(t["params"].get(p)) for p in params],
            *[_fmt(v) for v in t["values"]],
            _fmt(rep.get("remaining_pct_at_selected")),
            _fmt(rep.get("test_acc_at_selected")),
        )
    console.print(table)
    failed = [t for t in outcome.trials if t["state"] == "FAIL"]
    if failed:
        ftable = Table(title="trials that failed (never eligible as best)", title_justify="left")
        for col in ("optuna trial", "params", "why"):
            ftable.add_column(col)
        for t in failed:
            ftable.add_row(
                str(t["number"]),
                ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(t["params"].items())),
                t.get("failure") or "the trial raised (see the lineages table and Tune's log)",
            )
        console.print(ftable)
    console.print(f"results lake: {outcome.results_root}   (study results {outcome.results_root} --study {study.name})")
    console.print(f"tune experiment: {outcome.tune_path}")
    console.print(f"optuna storage: {outcome.optuna_storage}")
    if outcome.errors:
        console.print(f"[red]{outcome.errors} trial(s) failed for good; their finished rounds are in the lake[/red]")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
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


def cmd_results(args: argparse.Namespace, console: Console) -> int:
    from study.analysis.summary import summarize
    from study.lake.compact import lake_studies
    from study.lake.store import normalize_root

    root = normalize_root(args.root)
    try:
        known = lake_studies(root)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}; pass the lake's root, or fill one with `study lineage SPEC.yaml --results {args.root}`"
        ) from None
    if args.study is not None and args.study not in known:
        raise FileNotFoundError(f"study {args.study!r} is not in {root}; studies there: {', '.join(known) or 'none'}")
    summary = summarize(root, args.study)
    for s in summary.skipped:
        print(f"skipped unreadable file: {s}", file=sys.stderr)
    if not summary.strategies:
        if summary.skipped:
            console.print(
                f"no readable rounds under {root}: {len(summary.skipped)} unreadable file(s) skipped, named above"
            )
            return 2
        console.print(f"no rounds under {root} yet (lineages are registered; their rounds land as they finish)")
        return 0
    console.print(_table(f"results in {root}", summary.strategies, ("study", "strategy", "model", "dataset")))
    if summary.paired:
        title = "paired controls: trunk − branch, per seed and round (test acc, reported)"
        console.print(_table(title, summary.paired, ("study", "model", "dataset", "config", "trunk − branch")))
    return 0


def _table(title: str, rows: list[dict], left: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in left else "right")
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    return table


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

    written = compact(normalize_root(args.root), args.study, force=args.force)
    for strategy, n in written.items():
        console.print(f"{args.study}/{strategy}: {n} rows in one file")
    return 0


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from study.engine.plan import pack_verdict, plan_lineage, total_iterations
    from study.engine.registry import strategy
    from study.engine.spec import load_lineage_spec

    spec = load_lineage_spec(args.spec)
    plan = plan_lineage(spec)
    console.print(f"strategy {spec.strategy}: {strategy(spec.strategy).summary}")
    table = Table(title=f"{spec.strategy} {spec.model} on {spec.dataset} ({spec.prune.scope})", title_justify="left")
    table.add_column("round", justify="right")
    table.add_column("% remaining", justify="right")
    for group in plan.groups:
        table.add_column(f"{group} kept", justify="right")
    for i, r in enumerate(plan.rounds):
        table.add_row(str(r), f"{plan.remaining_pct(i):.2f}", *[str(plan.counts[i][g]) for g in plan.groups])
    console.print(table)
    console.print(f"lineage id {spec.lineage_id()}, {total_iterations(spec, plan)} training iterations in all")
    packs, why = pack_verdict(spec)
    console.print("packing: its trainings may train stacked (packed)" if packs else f"packing: trains alone ({why})")
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


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(
        prog="study", description="Lottery-ticket studies: IMP lineages, searches and their results lake"
    )
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

    p = sub.add_parser("plan", help="show the rounds and exact per-group weight counts a spec will run")
    p.add_argument("spec")
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

    p = sub.add_parser("results", help="summarise what the results lake holds")
    p.add_argument("root", nargs="?", default=DEFAULT_RESULTS)
    p.add_argument("--study", default=None)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("compact", help="rewrite a finished study's round files into one file per strategy")
    p.add_argument("root")
    p.add_argument("--study", required=True)
    p.add_argument("--force", action="store_true", help="compact even with lineages still running")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("report", help="write a study's report: one static HTML file that opens offline")
    p.add_argument("study")
    p.add_argument("--out", required=True, help="the HTML file to write, e.g. report.html")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results lake root (default: %(default)s)")
    p.set_defaults(func=cmd_report)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
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
