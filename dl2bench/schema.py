"""The schema of a run config: the core keys, the keys each task family declares (`KEYS` in
dl2bench/families/<family>/task.py), which of them the run id always hashes, and which are bookkeeping.
config.py builds RunConfig from it; registries.py validates against it; neither imports the other
at module level."""
from __future__ import annotations

from typing import Dict, Optional

from .families import family_keys
from .families.base import Key

CORE_KEYS: Dict[str, Key] = {
    # what
    "task": Key(str, "fashion_mnist", "what to learn (python -m dl2bench list tasks)"),
    "model": Key(Optional[str], None, "architecture; None = the task's default"),
    "seed": Key(int, 0, "model init, dropout, batch order and augmentation"),
    "epochs": Key(Optional[int], None, "training epochs; None = the task's default"),
    "batch_size": Key(Optional[int], None, "training batch; None = the task's default"),
    "eval_batch_size": Key(int, 1000, "batch for evaluation (does not change results)"),
    # optimizer (hyperparameters left None take the optimizer's own default)
    "optimizer": Key(Optional[str], None, "update rule; None = the task's default"),
    "lr": Key(Optional[float], None, "peak learning rate; None = the task's default"),
    "momentum": Key(Optional[float], None, "SGD/RMSprop momentum; None = the optimizer's default"),
    "beta1": Key(float, 0.9, "Adam-family first-moment decay"),
    "beta2": Key(float, 0.999, "Adam-family second-moment decay"),
    "eps": Key(Optional[float], None, "optimizer epsilon; None = the optimizer's default"),
    "weight_decay": Key(float, 0.0, "the optimizer's weight decay (L2 in the gradient; decoupled for adamw)"),
    # learning-rate schedule
    "schedule": Key(str, "constant", "lr schedule (python -m dl2bench list schedules)"),
    "warmup_epochs": Key(float, 0.0, "linear lr warm-up, in epochs"),
    "step_every": Key(int, 0, "epochs between `step` decays; 0 = a third of the run"),
    "step_gamma": Key(float, 0.1, "factor of each `step` decay"),
    "min_lr_ratio": Key(float, 0.0, "floor for cosine/onecycle, as a fraction of lr"),
    "plateau_patience": Key(int, 2, "epochs without validation-loss gain before `plateau` decays"),
    "plateau_factor": Key(float, 0.1, "factor of each `plateau` decay"),
    # initialisation and regularisation: one categorical factor each
    "init": Key(str, "default", "weight initialisation (python -m dl2bench list inits)"),
    "init_std": Key(float, 0.01, "standard deviation for init `normal`"),
    "regularizer": Key(str, "none", "one regulariser (python -m dl2bench list regularizers)"),
    "reg_strength": Key(Optional[float], None, "its strength; meaning and default per regulariser"),
    # data
    "data_root": Key(str, "", "dataset folders (os.pathsep separated); '' = $DL2BENCH_DATA, then the defaults"),
    "download": Key(bool, False, "download missing datasets with torchvision"),
    "train_size": Key(int, 0, "training examples; 0 = the whole training split (after validation)"),
    "val_size": Key(Optional[int], None, "validation examples carved from training; None = the task's default"),
    "test_size": Key(int, 0, "test examples; 0 = the whole test split"),
    "loader": Key(str, "tensor", "tensor (resident, device-side batches) | dataloader (torch DataLoader)"),
    "num_workers": Key(int, 2, "DataLoader workers (loader=dataloader)"),
    # device and speed
    "device": Key(str, "auto", "cpu | cuda | auto (cuda when there is one)"),
    "threads": Key(int, 0, "CPU threads; 0 = $SLURM_CPUS_PER_TASK, else every usable core"),
    "precision": Key(str, "fp32", "fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler, CUDA only)"),
    "compile": Key(bool, False, "torch.compile the model"),
    "channels_last": Key(bool, False, "NHWC memory format for conv nets"),
    "deterministic": Key(bool, False, "deterministic algorithms (bit-identical reruns, slower)"),
    "warmup_steps": Key(int, 5, "steps excluded from throughput figures"),
    # training accuracy is counted on every Nth batch: counting it on all costs ~7% of an mlp step
    # on a CPU; the loss is averaged over every batch regardless
    "train_stats_every": Key(int, 10, "batches between training-metric counts (the loss counts every batch)"),
    # bookkeeping (does not change results, so not part of the run id)
    "wandb": Key(str, "auto", "auto | online | offline | disabled"),
    "project": Key(str, "dl2bench", "W&B project"),
    "entity": Key(str, "", "W&B entity ('' = your default)"),
    "group": Key(str, "", "W&B group (a sweep sets its name)"),
    "tags": Key(str, "", "W&B tags, comma separated"),
    "progress": Key(str, "auto", "auto | bar | log | none"),
    "checkpoint": Key(bool, True, "checkpoint every epoch and resume from it"),
    # added in schema 2 (hashed only where they differ from the task's default)
    "loss": Key(Optional[str], None, "the training loss; None = the task's default (its losses: python -m dl2bench list tasks)"),
    "save_weights": Key(bool, True, "leave the trained weights (model.pt) in the run folder"),
    # benchmark mode (dl2bench/train/bench.py): time steps and inference instead of training to convergence
    "mode": Key(str, "train", "train | benchmark (time training steps and inference: median and IQR, "
                "FLOP/s against the device's peak; no convergence)"),
    "bench_repeats": Key(int, 7, "benchmark: timed repeats; figures are their median and IQR"),
    "bench_steps": Key(int, 0, "benchmark: training steps per repeat; 0 = sized so that all repeats take "
                       "about 0.6 x bench_seconds"),
    "bench_seconds": Key(float, 6.0, "benchmark: timed seconds to aim for (0.6 training, 0.2 batch-1 latency, "
                         "0.2 large-batch inference); warm-up comes on top"),
    "infer_batch_size": Key(int, 256, "benchmark: batch of the large-batch inference throughput"),
}

# The keys of the first schema: every one of them is hashed, so run ids made before a key was
# added stay what they were (tests/data/run_ids_v1.json pins the shipped sweeps' ids).
V1_KEYS = frozenset((
    "task", "model", "seed", "epochs", "batch_size", "eval_batch_size", "optimizer", "lr", "momentum",
    "beta1", "beta2", "eps", "weight_decay", "schedule", "warmup_epochs", "step_every", "step_gamma",
    "min_lr_ratio", "plateau_patience", "plateau_factor", "init", "init_std", "regularizer",
    "reg_strength", "data_root", "download", "train_size", "val_size", "test_size", "loader",
    "num_workers", "device", "threads", "precision", "compile", "channels_last", "deterministic",
    "warmup_steps", "train_stats_every", "wandb", "project", "entity", "group", "tags", "progress",
    "checkpoint"))

_CORE_BOOKKEEPING = {"wandb", "project", "entity", "group", "tags", "progress", "data_root", "download",
                     "checkpoint", "save_weights"}

CHOICES = {"loader": ("tensor", "dataloader"), "device": ("cpu", "cuda", "auto"),
           "precision": ("fp32", "bf16", "fp16"), "progress": ("auto", "bar", "log", "none"),
           "wandb": ("auto", "online", "offline", "disabled"), "mode": ("train", "benchmark")}


def _all_keys() -> Dict[str, Key]:
    keys = dict(CORE_KEYS)
    for family, declared in family_keys().items():
        for name, key in declared.items():
            if name in keys:
                raise ValueError(f"config key {name!r} of family {family!r} is already a config key")
            keys[name] = key._replace(family=family)
    return keys


KEY_SPECS: Dict[str, Key] = _all_keys()
KEY_DOCS: Dict[str, str] = {k: v.doc for k, v in KEY_SPECS.items()}
BOOKKEEPING = frozenset(_CORE_BOOKKEEPING | {k for k, v in KEY_SPECS.items() if v.bookkeeping})
