"""Data layer: the only code that touches Kaggle files.

Reads the MABe layout (train.csv / test.csv, *_tracking/<lab>/<video>.parquet, train_annotation/...),
maps every lab's skeleton to one canonical set, turns intervals into frame labels, computes pure-numpy
features, and writes a memory-mappable feature cache. No torch here.
"""
