"""Mean ± sd over the jobs of one Hydra multirun: k folds, several seeds, or both, grouped by configuration.

A k-fold run is an ordinary multirun (no second launcher), e.g. the five official ML-100K folds, or five
random folds of any table, or two models on the same folds::

    python train.py -m experiment=ml100k_u1 data.root=../shared/datasets/ml-100k data.fold=1,2,3,4,5
    python train.py -m data/split=kfold 'data.split.fold=range(5)'
    python train.py -m model=biased_mf,ials data/split=kfold 'data.split.fold=range(5)'

Every job writes its own run directory (``<sweep dir>/<job number>``; they share ``paths.data_dir`` and so
one image-feature cache). When the sweep ends, :class:`SweepSummary` (a Hydra callback registered in
``conf/hydra/default.yaml``) groups the jobs by their command-line overrides minus the fold and seed keys
(:data:`FOLD_KEYS`), and writes into the sweep directory:

* ``cv_summary.json``: per group, its overrides, its jobs and, for every metric, mean, sd, n and the
  per-job values;
* ``cv_summary.csv``: one row per (group, metric) with mean, sd, n and one column per fold;

and, when the run logs to W&B, one extra W&B run per group in the sweep's group (``job_type``
``cv_summary``) whose summary holds ``<metric>/mean`` and ``<metric>/sd``. A job's metrics are its
``metrics.json`` (rating metrics of the tested checkpoint) plus the evaluator's report on the test part
for that checkpoint (``eval/<checkpoint>_test_<protocol>/metrics.json``: P/R/F1/NDCG/... by segment, the
popularity baseline beside it). ``python -m visrec.pipeline.cross_validation <sweep dir>`` writes the same
files again, e.g. after a job was re-run by hand.

**Paired tests against a reference group.** Name one group as the reference (``--reference model=ials`` on
the command line, or ``'hydra.callbacks.cv_summary.reference="model=ials"'`` on a multirun) and every other
group gets, per segment and ranking metric at 10, a paired t-test and a Wilcoxon signed-rank test over users
against it (:mod:`visrec.evaluation.significance`): the evaluator's ``per_user.parquet`` of the tested
checkpoint, users paired within the same fold / seed (matched by the fold and seed overrides) and pooled over
folds. ``cv_summary.json`` holds them under each group's ``significance`` (p-values, mean difference,
Cohen's d_z and the rank-biserial r), ``cv_summary.csv`` in the columns ``p_ttest``, ``p_wilcoxon``,
``effect_size`` and ``n_pairs`` of the rows ``model/<segment>/<metric>``, and the printed table beside each
model metric.

sd is the sample standard deviation (ddof = 1), as papers report ± over folds; note that Surprise's
``cross_validate`` prints the population sd (``numpy.std``, ddof = 0), which is smaller by √((n−1)/n).
A job without ``metrics.json`` (failed or still running) is listed under ``failed`` and left out. A job that
failed in a multirun — whatever its error — does not end the sweep: ``train.py`` prints the error, records it in
the job's ``failed.json`` (:func:`record_job_failure`) and returns, the next jobs run, the summary of the jobs
that finished is written with the failures listed (``failures``: job, overrides, error), and then the multirun
exits with status 1 so that scripts see it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visrec.pipeline.run_folder import PROTOCOL_VARIANT, held_run_files
from visrec.utils.atomic import atomic_path, write_json_atomic

# Overrides that vary *within* one group: which fold, which seed.
FOLD_KEYS = ("data.fold", "data.split.fold", "seed")
SUMMARY_JSON = "cv_summary.json"
SUMMARY_CSV = "cv_summary.csv"
FAILURE_FILE = "failed.json"
# What the printed table shows (all metrics are in the files).
HEADLINE = ("test/rmse", "test/mae", "model/warm/precision@10", "model/warm/recall@10", "model/warm/f1@10",
            "model/warm/ndcg@10", "popularity/warm/ndcg@10")
# What the paired tests cover (per segment of the evaluator's report): the ranking metrics at 10.
TESTED_METRICS = ("precision@10", "recall@10", "f1@10", "ndcg@10")


@dataclass(frozen=True)
class Job:
    """One job of a sweep: its number, run directory, overrides and metrics (None: no metrics.json)."""

    number: int
    run_dir: Path
    overrides: tuple[str, ...]
    metrics: dict[str, float] | None
    per_user_files: tuple[Path, ...] = ()  # the tested checkpoint's test reports' per_user.parquet
    error: str | None = None  # failed.json's message when the job failed


def record_job_failure(run_dir: str | Path, kind: str, message: str) -> None:
    """Write ``<run_dir>/failed.json`` ({"error": kind, "message": message}) atomically: why a multirun job
    ended without metrics.json (read by :func:`read_job`)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(run_dir) / FAILURE_FILE, {"error": kind, "message": message})


def _failure_message(run_dir: Path) -> str | None:
    try:
        recorded = json.loads((run_dir / FAILURE_FILE).read_text())
        return f"{recorded.get('error')}: {recorded.get('message')}"
    except (OSError, ValueError, AttributeError):
        return None


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def read_job(run_dir: Path) -> Job:
    """The job in ``run_dir`` (named by its job number). Raises ValueError naming the file when its
    ``.hydra/overrides.yaml`` is missing or not a list of strings (the run was not made by a multirun)."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.safe_load(overrides_file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{overrides_file}: cannot read the job's overrides ({error})") from error
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(f"{overrides_file}: expected a list of override strings")
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        return Job(int(run_dir.name), run_dir, tuple(overrides), None,
                   error=_failure_message(run_dir) or "no metrics.json (failed before recording why, or still running)")
    run_metrics = json.loads(metrics_file.read_text())
    metrics = {k: float(v) for k, v in run_metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tested = run_metrics.get("tested_checkpoint")
    stem = Path(tested).stem if tested else "final"
    per_user = []
    for report_file in sorted((run_dir / "eval").glob(f"{stem}_test_*/metrics.json")):
        if PROTOCOL_VARIANT in report_file.parent.name:  # a later evaluation under other rules (evaluation.report_folder)
            continue
        report = json.loads(report_file.read_text()).get("metrics", {})
        metrics.update({k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if (report_file.parent / "per_user.parquet").is_file():
            per_user.append(report_file.parent / "per_user.parquet")
    return Job(int(run_dir.name), run_dir, tuple(overrides), metrics, tuple(per_user))


def read_sweep(sweep_dir: str | Path) -> list[Job]:
    """Every job of the multirun in ``sweep_dir`` (sub-directories named by job number), in job order.
    Raises ValueError when there is none."""
    sweep_dir = Path(sweep_dir)
    dirs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not dirs:
        raise ValueError(f"{sweep_dir}: no job directories (0/, 1/, ...): not a multirun's sweep directory")
    return [read_job(d) for d in dirs]


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n, "values": values}


def _fold_label(job: Job, fold_keys: tuple[str, ...]) -> str:
    return _fold_overrides(job, fold_keys) or str(job.number)


def _fold_overrides(job: Job, fold_keys: tuple[str, ...]) -> str:
    """The job's fold / seed overrides ('' when it has none: one run per group, which pairs with the other
    groups' single runs)."""
    return " ".join(o for o in job.overrides if _override_key(o) in fold_keys)


def per_user_rows(jobs: list[Job], fold_keys: tuple[str, ...]) -> "pd.DataFrame":
    """The model scorer's per-user rows of ``jobs`` with a ``fold`` column (the job's fold / seed overrides).
    Raises ValueError naming a job whose per_user.parquet is missing (made before visrec wrote them)."""
    import pandas as pd

    frames = []
    for job in jobs:
        if not job.per_user_files:
            raise ValueError(f"{job.run_dir}: no eval/*_test_*/per_user.parquet (evaluated before visrec wrote per-user "
                             "metrics): re-evaluate it with evaluate.py run_dir=... to test it")
        rows = pd.concat([pd.read_parquet(f) for f in job.per_user_files], ignore_index=True)
        rows = rows[rows["scorer"] == "model"].drop_duplicates(["segment", "user"], keep="last")
        frames.append(rows.assign(fold=_fold_overrides(job, fold_keys), user=rows["user"].astype(str)))
    return pd.concat(frames, ignore_index=True)


def find_reference(groups: list[dict], reference: str) -> dict:
    """The group named by ``reference``: its label exactly (its overrides, space-separated), else the one group
    whose overrides include every override of ``reference``. Raises ValueError listing the groups otherwise."""
    exact = [g for g in groups if group_label(g) == reference]
    wanted = set(reference.split())
    matches = exact or [g for g in groups if wanted <= set(g["overrides"])]
    if len(matches) != 1:
        labels = "; ".join(group_label(g) for g in groups)
        raise ValueError(f"reference {reference!r} names {len(matches)} groups of the sweep; name one of: {labels}")
    return matches[0]


def add_significance(summary: dict, jobs: list[Job], reference: str, fold_keys: tuple[str, ...] = FOLD_KEYS,
                     metrics: tuple[str, ...] = TESTED_METRICS) -> dict:
    """Add to every group of ``summary`` but the reference a ``significance`` entry: per
    ``model/<segment>/<metric>``, the paired tests over users of the group against the ``reference`` group
    (:func:`visrec.evaluation.significance.compare_per_user`, pooled over the folds both groups ran).
    Raises ValueError when the reference names no single group or a job has no per-user metrics."""
    from visrec.evaluation.significance import compare_per_user

    by_number = {job.number: job for job in jobs}
    ref_group = find_reference(summary["groups"], reference)
    ref_rows = per_user_rows([by_number[n] for n in ref_group["jobs"]], fold_keys)
    summary["reference"] = group_label(ref_group)
    for group in summary["groups"]:
        if group is ref_group:
            continue
        rows = per_user_rows([by_number[n] for n in group["jobs"]], fold_keys)
        tests = compare_per_user(ref_rows, rows, metrics)
        group["significance"] = {"reference": group_label(ref_group), "tests": {f"model/{k}": v for k, v in tests.items()}}
    return summary


def summarize(jobs: list[Job], fold_keys: tuple[str, ...] = FOLD_KEYS, reference: str | None = None) -> dict:
    """Group ``jobs`` by their overrides minus ``fold_keys`` and give, per group and metric, mean, sample
    sd (None for one value), n and the per-job values. Metrics missing in some jobs of a group are
    summarized over the jobs that have them (n says how many). With ``reference`` (a group's overrides),
    paired tests of every other group against it (:func:`add_significance`)."""
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        if job.metrics is not None:
            key = tuple(o for o in job.overrides if _override_key(o) not in fold_keys)
            groups.setdefault(key, []).append(job)
    out = []
    for key, members in groups.items():
        names = sorted({name for job in members for name in job.metrics})
        folds = [_fold_label(job, fold_keys) for job in members]
        metrics = {}
        for name in names:
            values = [job.metrics[name] for job in members if name in job.metrics]
            metrics[name] = _stats(values)
        out.append({"overrides": list(key), "jobs": [job.number for job in members], "folds": folds, "metrics": metrics})
    failed = [job for job in jobs if job.metrics is None]
    summary = {"fold_keys": list(fold_keys), "groups": out, "failed": [job.number for job in failed],
               "failures": [{"job": job.number, "overrides": list(job.overrides), "error": job.error} for job in failed]}
    if reference is not None:
        add_significance(summary, jobs, reference, fold_keys)
    return summary


def group_label(group: dict) -> str:
    return " ".join(group["overrides"]) or "(no overrides)"


def write_summary(sweep_dir: str | Path, summary: dict) -> tuple[Path, Path]:
    """Write ``cv_summary.json`` and ``cv_summary.csv`` into ``sweep_dir`` (temporary name, then rename)."""
    sweep_dir = Path(sweep_dir)
    json_path, csv_path = sweep_dir / SUMMARY_JSON, sweep_dir / SUMMARY_CSV
    write_json_atomic(json_path, summary)
    width = max((len(g["folds"]) for g in summary["groups"]), default=0)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "metric", "mean", "sd", "n", "p_ttest", "p_wilcoxon", "effect_size", "n_pairs",
                         *(f"fold_{i}" for i in range(width))])
        for group in summary["groups"]:
            tests = group.get("significance", {}).get("tests", {})
            for name, s in group["metrics"].items():
                t = tests.get(name, {})
                paired = ["" if t.get(k) is None else t[k] for k in ("p_ttest", "p_wilcoxon", "effect_size", "n")]
                writer.writerow([group_label(group), name, s["mean"], "" if s["sd"] is None else s["sd"], s["n"], *paired,
                                 *s["values"]])
    return json_path, csv_path


def format_summary(summary: dict, metrics: tuple[str, ...] = HEADLINE) -> str:
    """A plain-text table: one row per group, ``mean ± sd`` of each headline metric a group has, and the
    Wilcoxon p-value against the reference group where paired tests were run."""
    shown = [m for m in metrics if any(m in g["metrics"] for g in summary["groups"])]
    lines = [" | ".join(["group", "n", *shown])]
    for group in summary["groups"]:
        cells = []
        tests = group.get("significance", {}).get("tests", {})
        for name in shown:
            s = group["metrics"].get(name)
            cell = "—" if s is None else f"{s['mean']:.4f}" + ("" if s["sd"] is None else f" ± {s['sd']:.4f}")
            p = tests.get(name, {}).get("p_wilcoxon")
            cells.append(cell + ("" if p is None else f" (p={p:.2g})"))
        lines.append(" | ".join([group_label(group), str(len(group["jobs"])), *cells]))
    if "reference" in summary:
        lines.append(f"p: Wilcoxon signed-rank over users, paired with the reference group {summary['reference']!r}")
    if summary["failed"]:
        lines.append(f"jobs without metrics (left out): {summary['failed']}")
        for failure in summary.get("failures", []):
            lines.append(f"  job {failure['job']} ({' '.join(failure['overrides'])}): {failure['error']}")
    return "\n".join(lines)


def log_summary_to_wandb(summary: dict, wandb_options: dict, group: str, save_dir: Path) -> None:
    """One W&B run per group (``job_type`` ``cv_summary``, in the sweep's W&B group) whose summary holds
    ``<metric>/mean``, ``<metric>/sd`` and ``<metric>/n``, plus a table of the per-fold values."""
    import wandb

    from visrec.tracking.wandb_logger import finish_wandb_run, resolve_mode

    mode = resolve_mode(wandb_options.get("mode", "auto"))
    if mode == "disabled":
        return
    for index, entry in enumerate(summary["groups"]):
        run = wandb.init(project=wandb_options.get("project", "visrec"), entity=wandb_options.get("entity"), group=group,
                         job_type="cv_summary", name=f"{group} cv {index}", dir=str(save_dir), mode=mode,
                         config={"overrides": entry["overrides"], "jobs": entry["jobs"], "folds": entry["folds"]})
        for name, t in entry.get("significance", {}).get("tests", {}).items():
            for key in ("p_ttest", "p_wilcoxon", "effect_size"):
                if t[key] is not None:
                    run.summary[f"{name}/{key}"] = t[key]
        for name, s in entry["metrics"].items():
            run.summary[f"{name}/mean"] = s["mean"]
            run.summary[f"{name}/n"] = s["n"]
            if s["sd"] is not None:
                run.summary[f"{name}/sd"] = s["sd"]
        table = wandb.Table(columns=["metric", "mean", "sd", "n", "values"],
                            data=[[n, s["mean"], s["sd"], s["n"], json.dumps(s["values"])] for n, s in entry["metrics"].items()])
        run.log({"cv_summary": table})
        finish_wandb_run(run)


def summarize_sweep(sweep_dir: str | Path, wandb_options: dict | None = None, reference: str | None = None) -> dict:
    """Read, summarize, write and print the sweep in ``sweep_dir``; paired tests against the ``reference``
    group when given; log to W&B with ``wandb_options`` (the ``logger.wandb`` config node) when given.
    Returns the summary."""
    sweep_dir = Path(sweep_dir)
    jobs = read_sweep(sweep_dir)
    summary = summarize(jobs)
    if reference is not None:
        try:
            add_significance(summary, jobs, reference)
        except ValueError as error:  # the means and sds are still written; say why the tests are not
            summary["significance_error"] = str(error)
            print(f"error: paired tests not run: {error}")
    json_path, csv_path = write_summary(sweep_dir, summary)
    print(format_summary(summary))
    print(f"Sweep summary (each configuration over its seeds / folds): {json_path} and {csv_path}")
    if wandb_options is not None and summary["groups"]:
        log_summary_to_wandb(summary, wandb_options, group=sweep_dir.name, save_dir=sweep_dir)
    return summary


try:  # the callback needs Hydra; summarizing a finished sweep from the command line does not
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra-core is a dependency
    Callback = object


class SweepSummary(Callback):
    """Hydra callback: at the end of every multirun, :func:`summarize_sweep` on its sweep directory, with paired
    tests against the group named by ``reference`` (``hydra.callbacks.cv_summary.reference``) when set."""

    def __init__(self, reference: str | None = None) -> None:
        self.reference = reference

    def on_multirun_start(self, config, **kwargs) -> None:
        """Refuse a multirun into a sweep directory whose job folders hold runs (a relaunched sweep), before
        Hydra writes anything into them: its jobs would be refused one by one, but only after Hydra had
        rewritten their ``.hydra/overrides.yaml``, which the summary reads to label the earlier results."""
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)) \
            if sweep_dir.is_dir() else []
        held = [d.name for d in jobs if held_run_files(d)]
        if held:
            print(f"train.py: {sweep_dir}: already holds the runs of an earlier sweep (jobs {', '.join(held[:5])}"
                  f"{', ...' if len(held) > 5 else ''}): a new sweep into it would mix the two; give it its own "
                  "hydra.sweep.dir (an Optuna study with hydra.sweeper.storage resumes from its storage in any "
                  "folder; one job continues with resume_dir=<job folder>)", file=sys.stderr)
            raise SystemExit(2)

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        logger = config.get("logger") or {}
        wandb_node = next((node for node in logger.values() if node is not None
                           and str(node.get("_target_", "")).endswith("make_wandb_logger")), None)
        options = None
        if wandb_node is not None:
            from omegaconf import OmegaConf

            options = {k: v for k, v in OmegaConf.to_container(wandb_node, resolve=False).items()
                       if k in ("project", "entity", "mode")}
        summary = summarize_sweep(sweep_dir, options, reference=self.reference)
        if summary["failed"]:  # the summary of the finished jobs is written; the multirun still reports failure
            print(f"{len(summary['failed'])} of {len(summary['failed']) + sum(len(g['jobs']) for g in summary['groups'])} "
                  f"jobs failed: {summary['failed']} (see above and {sweep_dir / SUMMARY_JSON})", file=sys.stderr)
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write cv_summary.json / .csv for a finished multirun.")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--reference", default=None,
                        help="the group the others are tested against (its overrides, e.g. 'model=ials'): paired "
                             "Wilcoxon and t-tests over users, pooled over folds / seeds")
    args = parser.parse_args(argv)
    try:
        summary = summarize_sweep(args.sweep_dir, reference=args.reference)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if "significance_error" in summary:
        raise SystemExit(2)


if __name__ == "__main__":
    main()
