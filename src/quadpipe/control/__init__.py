"""Closed-loop path following, shared by learning (DAgger) and evaluation: path geometry, the
path-following expert. Builds on sim only."""
