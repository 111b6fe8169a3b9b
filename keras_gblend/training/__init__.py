"""Training with G-Blend: what runs inside and around `model.fit`.

Modules:
    callback: `GBlendCallback`, the weights estimated and assigned during fit.
    logs: what fit shows and records (progress bar, `CSVLogger`).
    tuning: `select_learning_rate`, the learning rate chosen on `V`.
"""
