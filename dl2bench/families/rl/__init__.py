"""The rl family (deep Q-learning): its tasks (task.py), Q-nets (models.py), the course's grid game
(mouse.py), environments stepped as a batch (envs.py) and deep Q-learning as a loop step (dqn.py)."""
from . import models, task, workloads  # noqa: F401 - registers the models, then the tasks and workloads
