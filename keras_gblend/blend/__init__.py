"""G-Blend's math and its measurement; no Keras model is built here.

Modules:
    formula: the weights `w_k = (dG_k / dO_k^2) / Z` from per-head losses, and
        their scales (pure numpy).
    estimators: from the measurements so far to one set of weights (the
        paper's, windowed, robust, the fused-head floor).
    state: the record (measurements, estimates) and its log keys.
    state_file: the state file: its JSON format, version-1 files, save, load.
    measure: each head's loss on `T'` and `V`, in inference mode; the
        measurer interface and the in-situ measurer.
    compiled_losses: `T'` and `V` prepared once as backend tensors, and the
        one traced function per model that returns every head's losses.
    head_copies: trained copies of the heads' sub-models: the exact mode's
        measurer and offline estimation.
"""
