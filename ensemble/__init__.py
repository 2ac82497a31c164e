"""Competition metric, post-processing, ensembling, Kaggle export and offline predict.

Imports and runs with only torch, numpy, pandas and pyarrow (the offline Kaggle notebook).
"""
