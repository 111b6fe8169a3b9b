"""The multi-head model: heads, fusion, encoders, the builder, the objective, output modes."""
