"""The seed of the Optuna searches' sampler (conf/hparams_search/optuna*.yaml), so that a resumed study does
not repeat its first launch's suggestions."""
from __future__ import annotations


def resumed_seed(seed, storage: str | None, study_name: str | None) -> int:
    """``seed`` + the number of trials ``study_name`` already holds in ``storage`` (+ 0 without storage, or for a
    new study). A sampler seeded the same way again starts from the same random state, so a relaunch that
    resumes a stored study would replay the first launch's suggestions (its random startup trials exactly);
    seeded past the stored trials it draws new ones, and the same stored study and seed still give the same
    sampler. Used through the config resolver ``${visrec.resumed_seed:<seed>,<storage>,<study name>}``."""
    stored = 0
    if storage and study_name:
        import optuna

        summaries = optuna.study.get_all_study_summaries(storage=str(storage))
        stored = next((summary.n_trials for summary in summaries if summary.study_name == str(study_name)), 0)
    return int(seed) + stored
