"""Training, Ray Train/Tune search and the Modal fallback.

Nothing here imports ray, optuna or modal at package import time: `tune.config` and `tune.checkpoint` are
used by the offline Kaggle predictor, which has none of them.
"""
