"""Training and evaluation engine: trainer, evaluator, EMA, checkpoints, distributed set-up."""
