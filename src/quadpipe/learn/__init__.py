"""Learning the policy: observations and samples, the network, behaviour cloning, DAgger.
Builds on sim, control and data."""
