"""quadpipe: quadruped imitation-learning datasets and policies, from MuJoCo to a report."""

__version__ = "0.1.0"
