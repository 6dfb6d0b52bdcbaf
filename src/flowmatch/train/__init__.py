"""Training: the run-config schema (`config`), the trainer, checkpoints and EMA.

Kept free of imports so that `flowmatch.train.config` can be loaded (for example to validate a
YAML file) without pulling in the trainer.
"""
