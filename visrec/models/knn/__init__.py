"""The neighbourhood family: KNNWithMeans recommenders with no factor tables (so not exportable).
``user_scoring`` / ``user_module``: user-based kNN on co-ratings (``UserKNN``, ``model=user_knn``);
``visual_scoring`` / ``visual_module``: item-based kNN on image-feature similarity (``VisualKNN``,
``model=visual_knn``). The ``*_scoring`` modules are torch only, the ``*_module`` ones the LightningModules.
No imports here, so importing a torch-only module of this family does not import Lightning."""
