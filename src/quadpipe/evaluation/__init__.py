"""Closed-loop evaluation of a trained policy against the expert. Builds on everything below."""
