"""The factor family: biased matrix factorization, r̂_ui = μ + b_u + b_i + p_u·q_i. ``net`` is the plain
nn.Module (:class:`~visrec.models.factor.net.BiasedMF`), ``scoring`` the torch-only scoring halves
(``RatingScoring``, ``BaselineScoring``), ``module`` biased MF trained on observed ratings (``RatingModule``,
``model=biased_mf``), ``baseline_only`` μ + b_u + b_i alone (``BaselineOnly``, ``model=bias_only``) and
``bias_als`` the closed-form ALS of the biases they and the kNN models share. No imports here, so importing a
torch-only module of this family does not import Lightning."""
