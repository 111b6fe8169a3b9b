"""Training with G-Blend: the callback, its logs, the learning-rate search on V."""
