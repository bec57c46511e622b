"""Pairwise ranking models: BPR (Rendle et al., UAI 2009) and VBPR (He & McAuley, AAAI 2016), trained on
sampled (user, positive item, negative item) triples. ``sampling`` draws the negatives, ``scoring`` holds the
torch-only scoring halves (what ``evaluate.py`` and export load), ``module`` the LightningModules that train
them."""
