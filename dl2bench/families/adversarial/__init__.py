"""The adversarial family: attacks on trained classifiers (task.py) and the attacks themselves
(attacks.py: FGSM, PGD under l-inf and l2, and the ATTACKS registry; classification uses them for
adversarial training)."""
from . import task  # noqa: F401 - registers the tasks
