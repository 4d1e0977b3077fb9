"""The gan family (the course's final project): its tasks (task.py), generators and discriminators
(models.py), the two-network update (step.py), latent sampling with truncation (latent.py) and the
sample-quality measures (metrics.py: improved precision and recall, FID) in the feature space of a
classifier dl2bench trained."""
from . import models, task, workloads  # noqa: F401 - registers the models, then the tasks and workloads
