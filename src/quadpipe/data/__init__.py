"""The dataset: HDF5 format, shard generation with its resume journal, merge, statistics,
replay. Builds on sim only."""
