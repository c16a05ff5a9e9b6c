"""Metric helpers shared by the evaluation suites, one concept per module.

  :mod:`.calibration`  reliability bins, ECE / MCE, Brier score, NLL (Guo et al. 2017; JEM §5.2, App. D)
  :mod:`.detection`    AUROC / AUPR / FPR@95%TPR of an in- vs out-of-distribution score (via scikit-learn)
  :mod:`.ood_scores`   the three OOD scores of JEM §5.3: log p(x), max_y p(y|x), −‖∂ log p(x)/∂x‖₂
  :mod:`.fidelity`     IS / FID / KID through torch-fidelity: the one uint8 quantization, feature extractors,
                       Inception weights lookup, cached reference statistics
  :mod:`.sample_selection`  which generated images IS / FID score (the papers' confidence rules)
  :mod:`.names`        the names protocols choose among (bin convention, feature extractors), torch-free
Nothing here imports a suite; suites import from here.
"""
