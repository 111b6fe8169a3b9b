"""The multi-head model: one classifier head per modality plus the fused head.

Modules:
    heads: head names (`FUSED`) and the checks of modalities and branches.
    encoders: small modality branches (`mlp_encoder`, `conv_encoder`).
    fusion: how the branches' features are joined for the fused head.
    builder: `build_gblend_model`, branches in, compiled-ready model out.
    gblend_model: `GBlendModel`, its loss-weight variables and `fit`.
    fit_setup: what `GBlendModel.fit` does first: callbacks in order, the
        progress bar, checks of the data.
    objective: the unweighted `mean_head_loss`, one scale for the whole run.
    prediction: output modes as pure numpy (fused, mean, weighted).
    output_modes: the `GBlendModel` methods over them (`predict_output`, ...).
"""
