"""dl2bench: honest, repeatable deep-learning comparisons, tracked in W&B, launched on SLURM."""
__version__ = "0.1.0"
