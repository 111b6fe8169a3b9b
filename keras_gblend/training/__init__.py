"""Training with G-Blend: what runs inside and around `model.fit`.

Modules:
    callback: `GBlendCallback`, the weights estimated and assigned during fit.
    logs: `CSVLogger`, whose columns grow as G-Blend's keys appear.
    tuning: `select_learning_rate`, the learning rate chosen on `V`.
"""
