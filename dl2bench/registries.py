"""Every registry in one place (for config validation and `python -m dl2bench list`)."""
from .inits import INITS
from .models import MODELS
from .optim import OPTIMIZERS, SCHEDULES
from .regularizers import REGULARIZERS
from .tasks import TASKS

ALL = {"tasks": TASKS, "models": MODELS, "optimizers": OPTIMIZERS, "schedules": SCHEDULES,
       "inits": INITS, "regularizers": REGULARIZERS}
