"""The evaluator: every scorer on every segment, rating and ranking metrics, one report.

Segments and candidate sets: :mod:`visrec.evaluation.segments`; metric definitions:
:mod:`visrec.evaluation.metrics`; batching and tie order: :mod:`visrec.evaluation.ranking`,
:mod:`visrec.evaluation.topk`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from visrec.evaluation.metrics import RANKING_METRICS, rating_metrics
from visrec.evaluation.ranking import DEFAULT_BATCH_ELEMENTS, evaluate_ranking
from visrec.evaluation.scorers import Scorer
from visrec.evaluation.segments import Interactions, build_segments

DEFAULT_KS = (5, 10, 20)


@dataclass
class EvaluationReport:
    """results[scorer][segment][metric] = value; ``protocol`` says how the numbers were made."""

    protocol: dict
    results: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # per_user[scorer][segment] = (users (E,) indices, {"ndcg@10": (E,) float64, ...}): the values the
    # ranking metrics average, for paired tests between scorers or runs over the same users.
    per_user: dict[str, dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]] = field(default_factory=dict)

    def per_user_rows(self, user_ids=None) -> dict[str, list]:
        """Columns scorer, segment, user (``user_ids[index]`` when given, else the index) and one per ranking
        metric@K: one row per (scorer, segment, ranked user)."""
        columns: dict[str, list] = {"scorer": [], "segment": [], "user": []}
        names = sorted({m for segs in self.per_user.values() for _, values in segs.values() for m in values})
        columns.update({name: [] for name in names})
        for scorer, segs in self.per_user.items():
            for segment, (users, values) in segs.items():
                columns["scorer"] += [scorer] * len(users)
                columns["segment"] += [segment] * len(users)
                columns["user"] += [user_ids[i] for i in users.tolist()] if user_ids is not None else users.tolist()
                for name in names:
                    columns[name] += values[name].tolist() if name in values else [float("nan")] * len(users)
        return columns

    def flat(self) -> dict[str, float]:
        """``{scorer}/{segment}/{metric}`` -> value, e.g. ``model/warm/ndcg@10``."""
        return {f"{s}/{seg}/{m}": v for s, segs in self.results.items() for seg, ms in segs.items() for m, v in ms.items()}

    def rows(self) -> list[dict]:
        """One row per (scorer, segment, metric), with the protocol in every row (for CSV)."""
        tag = protocol_name(self.protocol)
        return [{"scorer": s, "segment": seg, "metric": m, "value": v, "protocol": tag}
                for s, segs in self.results.items() for seg, ms in segs.items() for m, v in ms.items()]

    def format(self) -> str:
        """Plain text: per segment, user counts, rating metrics, and a table of ranking metrics
        (metrics down; scorer@K across)."""
        blocks = [f"Evaluation protocol: {protocol_name(self.protocol)}"]
        unrated = [s for s, segs in self.results.items() if not any("rmse" in ms for ms in segs.values())]
        if unrated:  # said, not silently left out
            blocks.append(f"No RMSE/MAE for {', '.join(unrated)}: {'its scores are' if len(unrated) == 1 else 'their scores are'} "
                          "not ratings (preferences or counts); ranking metrics only")
        segments = list(dict.fromkeys(seg for segs in self.results.values() for seg in segs))
        ks = self.protocol["ks"]
        for segment in segments:
            results = {s: segs[segment] for s, segs in self.results.items() if segment in segs}
            first = next(iter(results.values()))
            notes = "".join(f"; {v} {k.replace('_', ' ')}" for k, v in first.items() if k.startswith("test_ratings"))
            blocks.append(f"\nSegment {segment}: {first['users_evaluated']} users ranked, {first['users_skipped']} "
                          f"skipped (no relevant test item){notes}")
            for name, r in results.items():
                if "rmse" in r:
                    blocks.append(f"  {name}: RMSE {_cell(r['rmse'])}, MAE {_cell(r['mae'])} over {r['ratings']} test ratings")
            ranked = {s: r for s, r in results.items() if f"precision@{ks[0]}" in r}
            if not ranked:
                continue
            header = ["metric", *(f"{s}@{k}" for s in ranked for k in ks)]
            body = [[m, *(_cell(r.get(f"{m}@{k}")) for r in ranked.values() for k in ks)] for m in (*RANKING_METRICS, "coverage")]
            widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
            rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

            def line(row):
                return "| " + " | ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths))) + " |"

            blocks += [rule, line(header), rule, *map(line, body), rule]
            blocks.append("  ranking compute: " + ", ".join(f"{s} {r['ranking_seconds']:.3f} s" for s, r in ranked.items()))
        return "\n".join(blocks)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def protocol_name(protocol: dict) -> str:
    return (f"relevant = rating >= {protocol['threshold']:g}; exclude_train={protocol['exclude_train']} "
            f"(candidates = known items minus the user's {'training items' if protocol['exclude_train'] == 'all' else 'training items rated >= threshold'}); "
            f"macro average over users with >= 1 relevant test item; "
            f"{'ties in index order' if protocol.get('ties', 'index') == 'index' else 'tied scores: expected value over a random order'}")


def evaluate(scorers: Sequence[Scorer], train: Interactions, test: Interactions, num_users: int, num_items: int,
             ks: Sequence[int] = DEFAULT_KS, threshold: float = 4.0, exclude_train: str = "all",
             max_batch_elements: int = DEFAULT_BATCH_ELEMENTS, known_users: torch.Tensor | None = None,
             known_items: torch.Tensor | None = None, activity_edges: Sequence[int] = (),
             ties: str = "expected") -> EvaluationReport:
    """Rating metrics (scorers that predict ratings) and ranking metrics for each segment of ``test``.

    ``train`` is all the data the model could see (train and validation parts). ``known_users`` (U,) /
    ``known_items`` (N,) bool: the model's warm users and items (default: those with a rating in
    ``train``; see :mod:`visrec.evaluation.segments`); ``activity_edges``: the warm items' activity (long-tail)
    segments, by interactions in ``train``; ``ties``: ``expected`` (each ranking metric in expectation over a random
    order of tied items) or ``index`` (see :func:`~visrec.evaluation.ranking.evaluate_ranking`)."""
    ks = sorted({int(k) for k in ks})
    segments = build_segments(train, test, num_users, num_items, threshold, exclude_train, known_users, known_items,
                              activity_edges)
    report = EvaluationReport({"threshold": float(threshold), "exclude_train": exclude_train, "ks": ks,
                               "num_users": num_users, "num_items": num_items, "activity_edges": [int(e) for e in activity_edges],
                               "ties": ties})
    for scorer in scorers:
        by_segment: dict[str, dict[str, float]] = {}
        for name, segment in segments.items():
            values: dict[str, float] = {}
            pred = scorer.predict(segment.ratings.users, segment.ratings.items)
            if pred is not None:
                values.update(rating_metrics(pred, segment.ratings.ratings))
            values["users_evaluated"] = 0 if segment.task is None else len(segment.task.users)
            values["users_skipped"] = segment.users_skipped
            values.update(segment.notes)
            if segment.task is not None:
                started = time.perf_counter()
                result = evaluate_ranking(scorer.score_users, segment.task, ks, max_batch_elements, ties)
                values.update(_ordered(result.means(), ks))
                report.per_user.setdefault(scorer.name, {})[name] = (segment.task.users.cpu(), result.per_user)
                values["ranking_seconds"] = round(time.perf_counter() - started, 4)
            by_segment[name] = values
        report.results[scorer.name] = by_segment
    return report


def _ordered(means: dict[str, float], ks: Sequence[int]) -> dict[str, float]:
    """Metrics grouped by K in a fixed reading order."""
    names = [*RANKING_METRICS, "coverage"]
    return {f"{n}@{k}": means[f"{n}@{k}"] for k in ks for n in names}
