"""Names and constants shared by the search's modules (driver, Optuna extension, results), kept here so
that each of them imports this small module instead of one another."""
from __future__ import annotations

OBJECTIVE = "val/best_score"   # what Tune, ASHA and Optuna optimise (best validation score so far)
SCORE = "val/score"            # this epoch's validation score (checkpoints are ranked by it)
BEST_CKPT = "best_checkpoint"  # key of the driver's final report: path of the trial's best checkpoint
DATA_ERROR = "data_error"      # a Train worker's report of bad input (MabeDataError): trial fails, no retry
FIRST_KEYS = (OBJECTIVE, SCORE, "epoch", "train/loss")   # Tune's live table shows the first 4 metrics
DEFAULT_GPU_HOUR_COST = 6.00   # USD per GPU-hour: the seed's Modal H100 run, $8.40 for 1.4 h
#                                (docs/history.md)
