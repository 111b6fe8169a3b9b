"""Reading and drawing what G-Blend did, after the run.

Modules:
    history: `read_history` of a state file, a CSV log or a Keras `History`.
    plot: the weights, `dG` / `dO` and per-head losses as PNG files.
"""
