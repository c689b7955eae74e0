"""Fine-tuning past the expert with PPO, from an imitated policy, in rsl-rl's layout.

runner (the resumable chain of jobs: iterations, state files, history), ppo (the algorithm: GAE
and the clipped update), rollout (the storage of one iteration and its collection over the
batched closed loop), actor_critic (the modules), env (the path-following episodes and the
reward).
"""
