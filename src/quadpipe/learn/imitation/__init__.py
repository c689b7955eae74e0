"""Imitation: behaviour cloning on the expert's dataset, then DAgger rounds labelled by the
path-following expert at the states the policy reaches (docs/training.md).

prepare (the samples), train (one seed's rounds in one process), stages (one resumable job per
round), dagger (the rounds' episodes), epochs and batches (the loop), candidates (best.pt),
mirror and noise (what each batch sees), train_config (the `train` section).
"""
