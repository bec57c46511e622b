"""The hybrid family: a linear blend of biased MF (:mod:`visrec.models.factor`) and visual kNN
(:mod:`visrec.models.knn`) rating predictions, with the weight chosen on validation (``model=hybrid``).
``scoring`` is the torch-only scoring half (``HybridScoring``), ``module`` the LightningModule (``Hybrid``).
No imports here, so importing a torch-only module of this family does not import Lightning."""
