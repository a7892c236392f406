"""Training and evaluation engine: trainer, evaluator, EMA, checkpoints, distributed set-up, and the
inference commands (`weights.load_model` for all of them; `val`, `detect`, `bench`)."""
