"""The autoencoder family: its tasks (task.py) and models (models.py)."""
from . import models, task, workloads  # noqa: F401 - registers the models, then the tasks and workloads
