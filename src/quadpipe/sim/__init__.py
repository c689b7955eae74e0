"""The robot and its open-loop simulation: MuJoCo model, state vector, trot expert, command
sampler, batched rollouts, stability filter, renderer. Imports nothing above it."""
