"""The experiment programs over one table of methods (`experiments.methods`).

`python -m experiments.<program>`: `train` (one method), `compare` (the paper's
comparison), `crossval` (the speaker-fold protocol), `sensitivity`,
`study_fused`, `defaults_study`, `inference_study`. Importing the package does
nothing else: the programs leave TensorFlow's logging as the environment sets
it (`TF_CPP_MIN_LOG_LEVEL`; `make demo` sets 3, which also hides tf.data's
harmless `NodeDef mentions attribute use_unbounded_threadpool` ERROR line that
every `fit` and `predict` logs under op determinism).
"""
