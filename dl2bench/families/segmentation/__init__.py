"""The segmentation family: its tasks (task.py), models (models.py) and the seeded procedural
shapes set (data.py)."""
from . import models, task, workloads  # noqa: F401 - registers the models, then the tasks and workloads
