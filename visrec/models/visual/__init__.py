"""The image side shared by the factor models: ``prior`` is the visual prior that maps an item's frozen
image features to its factor vector and bias (``VisualPrior``; the ``visual_mode`` values), ``rating_head``
and ``ials_head`` fit that map in closed form after training (``visual_mode=head``) for biased MF and for
iALS. Torch only; no imports here."""
