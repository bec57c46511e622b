"""Serve an export bundle with numpy: recommend, score, similar items, cold start from image features.

``import visrec.serving`` does not import torch; only :meth:`Recommender.items_like_image` does, lazily.
"""
from visrec.serving.bundle import BundleError, load_bundle
from visrec.serving.recommender import Recommender, UnknownIdError

__all__ = ["BundleError", "Recommender", "UnknownIdError", "load_bundle"]
