"""G-Blend's math and measurement: weights, estimators, the record, per-head losses, head copies."""
