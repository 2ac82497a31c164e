"""Training, Ray Train/Tune search and the Modal fallback.

Nothing here imports ray, optuna or modal at package import time. The offline Kaggle predictor does not use
this package: it needs features/, models/ (models.checkpoint) and ensemble/ only.
"""
