"""The iALS family: implicit-feedback weighted MSE over all cells, fitted by exact alternating least squares
(``model=ials``). ``solver`` is the torch-only ALS solver (CSR rows, normal equations, CG), ``scoring`` the
torch-only scoring half (``IALSScoring``) and ``module`` the LightningModule that trains it (``IALSModule``).
No imports here, so importing a torch-only module of this family does not import Lightning."""
