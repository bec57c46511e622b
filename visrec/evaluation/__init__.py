"""Rating and top-K evaluation: metric functions on tensors and a batched evaluator (torch only)."""
from visrec.evaluation.evaluator import DEFAULT_KS, EvaluationReport, evaluate
from visrec.evaluation.scorers import FactorScorer, PopularityScorer
from visrec.interactions import Interactions

__all__ = ["DEFAULT_KS", "EvaluationReport", "FactorScorer", "Interactions", "PopularityScorer", "evaluate"]
