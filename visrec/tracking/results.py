"""What a finished training run sends to W&B: the evaluator's table as summary values and a
``wandb.Table``, poster grids of a few users' recommendations, a map of the item vectors, and the
export bundle as an artifact."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from visrec.evaluation.topk import top_k
from visrec.tracking import media

log = logging.getLogger(__name__)


def wandb_loggers(loggers) -> list:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in loggers or [] if isinstance(lg, WandbLogger)]


def example_users(train_users: torch.Tensor, train_items: torch.Tensor, train_ratings: torch.Tensor,
                  num_users: int, count: int = 4, liked: int = 6, threshold: float = 4.0) -> list[tuple[int, list[int]]]:
    """The first ``count`` users (by index) with at least ``liked`` training ratings >= threshold,
    each with those items (highest rated first)."""
    high = train_ratings >= threshold
    per_user = torch.bincount(train_users[high], minlength=num_users)
    out = []
    for user in torch.nonzero(per_user >= liked).squeeze(1)[:count].tolist():
        rows = torch.nonzero((train_users == user) & high).squeeze(1)
        order = torch.argsort(train_ratings[rows], descending=True, stable=True)
        out.append((user, train_items[rows[order]][:liked].tolist()))
    return out


def log_run_results(loggers, report, scorer, item_vectors: torch.Tensor | None, train, image_paths: list, user_ids,
                    bundle: Path | None, has_image: torch.Tensor | None, k: int = 6) -> None:
    """Send the final results to each W&B logger. ``scorer``: the model's evaluator scorer (model
    contract); ``item_vectors`` (N, K) or None: the map of item vectors (drawn when the model has them);
    ``train``: the training Interactions (train + validation parts)."""
    runs = wandb_loggers(loggers)
    if not runs:
        return
    import wandb

    flat = report.flat()
    table = wandb.Table(columns=["scorer", "segment", "metric", "value", "protocol"],
                        data=[[r["scorer"], r["segment"], r["metric"], r["value"], r["protocol"]] for r in report.rows()])
    num_users = len(user_ids)
    rows = []
    for user, liked in example_users(train.users, train.items, train.ratings, num_users):
        scores = scorer.score_users(torch.tensor([user]))[0]  # (N,)
        seen = train.items[train.users == user]
        scores[seen] = float("-inf")
        recommended = top_k(scores[None], k)[0].tolist()
        rows.append((f"user {user_ids[user]}", [image_paths[i] for i in liked], [image_paths[i] for i in recommended]))
    num_items = len(image_paths)
    has_image = torch.zeros(num_items, dtype=torch.bool) if has_image is None else has_image
    for logger in runs:
        run = logger.experiment
        run.summary.update({f"eval/{key}": value for key, value in flat.items()})
        payload = {"eval/table": table}
        if item_vectors is not None:
            payload["eval/item_vectors_pca"] = wandb.Image(media.item_map(item_vectors.cpu().numpy(), has_image.numpy()))
        if rows:
            payload["eval/recommendations"] = wandb.Image(media.poster_grid(rows), caption="left: rated >= 4 in training; right: top recommendations")
        run.log(payload)
        if bundle is not None:
            artifact = wandb.Artifact(f"bundle-{run.id}", type="model", description="visrec export bundle")
            artifact.add_dir(str(bundle))
            run.log_artifact(artifact)
