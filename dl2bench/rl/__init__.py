"""Reinforcement learning pieces for the rl task family (dl2bench/tasks/rl.py): the course's grid
game (mouse), environments stepped as a batch (envs) and deep Q-learning as a loop step (dqn)."""
