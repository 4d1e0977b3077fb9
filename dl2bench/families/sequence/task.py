"""Sequence models (the course's recurrent nets and self-attention) on three kinds of task:

- `adding`: the adding problem (Hochreiter & Schmidhuber 1997): T steps of (value ~ U[0, 1],
  marker); exactly two markers, one in each half; the target is the sum of the two marked values.
  Loss and headline: MSE; predicting the mean scores the targets' variance (1/6), stated as
  `baseline_mse`; `skill` = 1 - MSE / baseline (0: no better than the mean, 1: exact).
- `copy`: the copy (memory) task (Graves et al. 2014; Arjovsky et al. 2016): 10 symbols from
  1..8, then T blanks (0), a delimiter (9) and 9 more blanks; the model must output the 10
  symbols over the last 10 steps (per-step outputs; loss and accuracy on those 10 only).
  Headline: per-symbol accuracy; a memoryless guess scores 1/8 (loss ln 8 = 2.08 nats).
- `fashion_mnist_rows`, `mnist_rows`: images read row by row (28 steps of 28 pixels), classified
  from the last step (a transformer: the mean over rows): the classification family's data,
  normalisation, loss and accuracy.
- `char_lm`: next-character prediction on a plain-text corpus (`corpus`: a UTF-8 file, .gz
  allowed; '' = Shakespeare's complete works, shakespeare-complete.txt.gz, looked for in the data
  folders; `tiny_shakespeare`: char-rnn's 1.1 M characters, downloaded with --download true).
  Split by position: the first 90% trains, the next 5% validates, the last 5% tests. An
  epoch is `lm_steps` batches of `context`-character windows at random offsets; evaluation reads
  every non-overlapping window of the first `lm_eval_chars` characters of its split (100,000 of
  the 253,000 of Shakespeare's; 0: all). Loss: cross-entropy in nats/char (headline), and
  bits/char. At the end `sample_len` characters are generated (seeded, `temperature`).

Denormal floats are flushed to zero on the CPU (`flush_denormal` in the summary): a vanishing
gradient otherwise slows a CPU several-fold, which GPUs do not.

The synthetic sets are drawn from `data_seed` with torch's CPU generator: the same sequences on
every machine, whatever the run's seed. The gradient norm (before clipping) is logged every
epoch (`train_grad_norm`); clipping is the `grad_clip` regulariser (`reg_strength` = max norm).
"""
from __future__ import annotations

import functools
import gzip
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ...errors import ConfigError
from ...media import MEDIA, Media, Table
from ...inits import INITS
from ...nets import MODELS
from ..base import PARAM_BYTES, TASKS, Augment, Key, Metric, Need, Problem, Task
from ..classification import task as classification

if TYPE_CHECKING:
    import torch

FAMILY = "sequence"
CORPUS = "shakespeare-complete.txt.gz"
# corpora known by name: (file in the data folders, where to download it; None = offline only)
NAMED = {"": (CORPUS, None),
         "tiny_shakespeare": ("tinyshakespeare.txt",
                              "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")}
COPY_SYMBOLS, COPY_LEN = 8, 10  # symbols 1..8, 10 of them; 0 blank, 9 delimiter
SPLITS = {"adding": (10000, 1000, 1000), "copy": (10000, 1000, 1000)}  # train, val, test sequences

KEYS = {
    "seq_len": Key(Optional[int], None, "sequence: T, the length of the adding problem / the blank gap of the copy "
                   "task; None = the task's default", min=2, max=100000),
    "hidden_size": Key(Optional[int], None, "sequence: recurrent state / transformer width; None = the task's default",
                       min=1),
    "param_budget": Key(Optional[int], None, "sequence: the widest hidden_size whose model has at most this many "
                        "parameters (models compared at equal size); replaces hidden_size", min=1),
    "num_layers": Key(Optional[int], None, "sequence: stacked layers; None = the task's default", min=1, max=64),
    "num_heads": Key(Optional[int], None, "sequence: transformer attention heads; None = the task's default", min=1),
    "data_seed": Key(int, 0, "sequence: the synthetic problems' generator seed (the same sequences on every "
                     "machine; the run's `seed` does not change them)", min=0),
    "corpus": Key(str, "", "sequence, task char_lm: a UTF-8 text file (.gz allowed); '' = Shakespeare's complete "
                  "works from the data folders; tiny_shakespeare = char-rnn's (downloaded with --download true)"),
    "context": Key(Optional[int], None, "sequence, task char_lm: characters per training window; None = the "
                   "task's default", min=2),
    "lm_steps": Key(Optional[int], None, "sequence, task char_lm: batches per epoch; None = the task's default",
                    min=1),
    "lm_eval_chars": Key(int, 100000, "sequence, task char_lm: characters of the validation and test splits "
                         "evaluated (their first ones; 0 = all)", min=0),
    "sample_len": Key(int, 500, "sequence, task char_lm: characters generated at the end", min=0),
    "temperature": Key(float, 0.8, "sequence, task char_lm: sampling temperature of the generated text",
                       min=1e-3, max=10.0),
}

GRAD_NORM = Metric("grad_norm", "minimize", "", "gradient norm before clipping", splits=("train",))
ADD_METRICS = (Metric("mse", "minimize", "MSE", "mean squared error"),
               Metric("skill", "maximize", "", "1 - MSE / variance of the targets"),
               Metric("loss", "minimize", "MSE", "mean squared error"), GRAD_NORM)
COPY_METRICS = (Metric("acc", "maximize", "", "per-symbol accuracy of the recalled symbols", percent=True),
                Metric("seq_acc", "maximize", "", "sequences recalled without a mistake", percent=True,
                       splits=("val", "test")),
                Metric("loss", "minimize", "nats", "cross-entropy of the recalled symbols"), GRAD_NORM)
LM_METRICS = (Metric("loss", "minimize", "nats/char", "cross-entropy per character"),
              Metric("bpc", "minimize", "bits/char", "bits per character"), GRAD_NORM)
ROW_METRICS = classification.METRICS + (GRAD_NORM,)


def model_kwargs(cfg, reg) -> Dict[str, Any]:
    return {"hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
            **reg.model_kwargs}


def shapes(cfg, vocab: Optional[int] = None) -> Tuple[Tuple[int, ...], int, Dict[str, Any]]:
    """(input shape, outputs, model keywords) of the task's model: what _prepare builds, and what
    param_budget is checked against at validation. `vocab`: char_lm's, from its corpus."""
    if cfg.task == "adding":
        return (cfg.seq_len, 2), 1, {}
    if cfg.task == "copy":
        return (cfg.seq_len + 2 * COPY_LEN,), COPY_SYMBOLS + 2, {"vocab": COPY_SYMBOLS + 2, "per_step": True}
    if cfg.task == "char_lm":
        return (cfg.context,), vocab, {"vocab": vocab, "per_step": True, "causal": True}
    return (1, 28, 28), 10, {}  # rows of images


def width_step(cfg) -> int:
    """hidden_size moves in steps of this: a transformer's width divides into its heads."""
    return (cfg.num_heads or 4) if cfg.model == "transformer" else 1


def params_at(cfg, in_shape, outputs: int, kwargs: Dict[str, Any], units: int) -> int:
    """Parameters of the model `units` width steps wide."""
    from ...nets import count_parameters

    kw = {**kwargs, "hidden_size": units * width_step(cfg)}
    return count_parameters(MODELS[cfg.model](tuple(in_shape), outputs, **kw))


def fit_width(cfg, reg, in_shape, outputs: int, extra: Dict[str, Any]) -> int:
    """The largest hidden_size (a multiple of num_heads for a transformer) whose model has at most
    param_budget parameters: counts grow with the width, so a binary search. Validation has
    refused a budget below the narrowest model (check_budget)."""
    def count(units: int) -> int:
        return params_at(cfg, in_shape, outputs, {**model_kwargs(cfg, reg), **extra}, units)

    lo, hi = 1, 1
    while count(hi * 2) <= cfg.param_budget:
        hi *= 2
    hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= cfg.param_budget else (lo, mid)
    return lo * width_step(cfg)


def build(cfg, reg, in_shape, outputs: int, device, **extra):
    kwargs = {**model_kwargs(cfg, reg), **extra}
    if cfg.param_budget:
        kwargs["hidden_size"] = fit_width(cfg, reg, in_shape, outputs, extra)
    try:
        model = MODELS[cfg.model](tuple(in_shape), outputs, **kwargs)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    INITS[cfg.init](model, cfg)
    return model.to(device), {"model": cfg.model, "args": [list(in_shape), outputs], "kwargs": kwargs}


# ---------------------------------------------------------------------------------------------
# the synthetic problems


def adding_problem(n: int, t: int, generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """n sequences of T x 2 (value, marker) and their targets (n x 1)."""
    import torch

    values = torch.rand(n, t, generator=generator)
    half = t // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, t, (n,), generator=generator)
    markers = torch.zeros(n, t)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], 2), y[:, None]


def copy_task(n: int, t: int, generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """n token sequences of length T + 20 and their per-step targets (-100 = not scored)."""
    import torch

    symbols = torch.randint(1, COPY_SYMBOLS + 1, (n, COPY_LEN), generator=generator)
    x = torch.zeros(n, t + 2 * COPY_LEN, dtype=torch.long)
    x[:, :COPY_LEN] = symbols
    x[:, COPY_LEN + t - 1] = COPY_SYMBOLS + 1  # the delimiter: recall starts after it
    y = torch.full_like(x, -100)
    y[:, -COPY_LEN:] = symbols
    return x, y


class TensorBatches:
    """Batches of resident tensors, shuffled with the run's data generator (training) or in order."""

    def __init__(self, x, y, batch_size: int, device, shuffle: bool):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.device = batch_size, shuffle, device

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def iterate(self, generator=None):
        import torch

        n = len(self.x)
        order = torch.randperm(n, generator=generator).to(self.device) if self.shuffle else None
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size] if order is not None else slice(i, i + self.batch_size)
            yield self.x[idx], self.y[idx]


def _synthetic(task: Task, cfg, device, reg) -> Problem:
    import torch
    import torch.nn.functional as F

    sizes = SPLITS[task.data]
    n_train = cfg.train_size or sizes[0]
    n_val = cfg.val_size if cfg.val_size is not None else sizes[1]
    n_test = cfg.test_size or sizes[2]
    g = torch.Generator().manual_seed(cfg.data_seed)
    make = adding_problem if task.data == "adding" else copy_task
    # one stream, in a fixed order: test first, so a larger train_size never changes the test set
    test = make(n_test, cfg.seq_len, g)
    val = make(n_val, cfg.seq_len, g)
    train = make(n_train, cfg.seq_len, g)
    adding = task.data == "adding"
    shape, outputs, extra = shapes(cfg)
    model, recipe = build(cfg, reg, shape, outputs, device, **extra)
    baseline = test[1].var(unbiased=False).item() if adding else None
    batches = TensorBatches(*train, cfg.batch_size, device, shuffle=True)
    evals = {"val": TensorBatches(*val, cfg.eval_batch_size, device, False),
             "test": TensorBatches(*test, cfg.eval_batch_size, device, False)}
    var = {"val": val[1].var(unbiased=False).item() if adding else None, "test": baseline}

    def scored(out, y):
        return out[:, -COPY_LEN:].reshape(-1, out.shape[-1]), y[:, -COPY_LEN:].reshape(-1)

    def loss(m, batch, detail):
        x, y = batch
        out = m(x)
        if adding:
            data_loss = F.mse_loss(out.float(), y)
        else:
            data_loss = F.cross_entropy(*scored(out.float(), y))
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        stats = {}
        if detail and not adding:
            with torch.no_grad():
                logits, target = scored(out, y)
                stats["acc"] = (logits.argmax(1) == target).float().view(len(x), -1).mean(1).sum()
        return objective, data_loss, len(x), stats

    def evaluate(m, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
        split = "val" if eval_batches is evals["val"] else "test"
        total, right, whole, n = 0.0, 0.0, 0.0, 0
        with torch.inference_mode(), autocast():
            for x, y in eval_batches.iterate():
                out = m(x).float()
                if adding:
                    total += F.mse_loss(out, y, reduction="sum").item()
                else:
                    logits, target = scored(out, y)
                    total += F.cross_entropy(logits, target, reduction="sum").item() / COPY_LEN
                    hit = (logits.argmax(1) == target).view(len(x), -1)
                    right += hit.float().mean(1).sum().item()
                    whole += hit.all(1).sum().item()
                n += len(x)
        if adding:
            mse = total / n
            return {"mse": mse, "loss": mse, "skill": 1 - mse / var[split]}
        return {"loss": total / n, "acc": right / n, "seq_acc": whole / n}

    facts = {"seq_len": cfg.seq_len, "data": f"{task.data} problem, T = {cfg.seq_len}, data_seed {cfg.data_seed}"}
    if adding:
        facts.update(baseline_mse=baseline, baseline="predict the mean (MSE = the targets' variance)")
    else:
        facts.update(baseline_acc=1 / COPY_SYMBOLS, baseline_loss=math.log(COPY_SYMBOLS),
                     baseline="a memoryless uniform guess over the 8 symbols")
    example = (lambda dev: torch.zeros(1, cfg.seq_len + 2 * COPY_LEN, dtype=torch.long, device=dev)) if not adding else None
    return Problem(model=model, build=recipe, train_batches=batches, splits=tuple(evals), evaluate=evaluate,
                   n_train=n_train, source=facts["data"], in_shape=(cfg.seq_len, 2) if adding else (),
                   loss=loss, example_input=example, metrics=task.metrics, facts=facts)


# ---------------------------------------------------------------------------------------------
# character-level language modelling


def corpus_path(cfg, fetch: bool = False) -> Path:
    """The corpus file: `corpus` as a path, or a named corpus (NAMED) looked for in the data
    folders; with `fetch` and --download true, one that has a URL is downloaded into the first
    writable data folder. A named corpus that is nowhere raises DatasetNotFound (like every
    dataset); a path that is not a file is left for `check` to name."""
    from ...data.sources import DatasetNotFound, search_roots

    if cfg.corpus not in NAMED:
        return Path(cfg.corpus).expanduser()
    name, url = NAMED[cfg.corpus]
    roots = search_roots(cfg.data_root)
    for root in roots:
        if (Path(root) / name).is_file():
            return Path(root) / name
    if fetch and cfg.download and url:
        import urllib.request

        for root in roots:
            try:
                Path(root).mkdir(parents=True, exist_ok=True)
                tmp = Path(root) / f".{name}.part"
                urllib.request.urlretrieve(url, tmp)
                tmp.replace(Path(root) / name)
                return Path(root) / name
            except OSError:
                continue
    looked = ", ".join(str(Path(r) / name) for r in roots)
    how = (f"--download true fetches it from {url}" if url else
           "it ships with dl2bench's offline data (../shared/data/README.md)")
    raise DatasetNotFound(f"corpus {cfg.corpus or 'default'!r} ({name}) not found. Looked in: {looked}. Set "
                          f"DL2BENCH_DATA or --data_root to the folder holding it; {how}; or name a UTF-8 text "
                          "file with --corpus")


# Shakespeare is 5.5 MB; the text is held as one int64 id per character (8x), on the run's device
MAX_CORPUS_BYTES = 256 * 2**20


class CorpusError(ValueError):
    """The corpus file cannot be used as text; the message says why."""


@functools.lru_cache(maxsize=4)
def read_corpus(path: str) -> str:
    """The corpus as text. A .gz file is decompressed in chunks and stops at MAX_CORPUS_BYTES, so a
    small file that expands to gigabytes (a gzip bomb) is refused without being expanded."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        try:
            reader = gzip.GzipFile(fileobj=f) if gz else f
            raw = reader.read(MAX_CORPUS_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut file ends in EOFError
            raise CorpusError(f"is not a readable gzip file ({type(e).__name__}: {e})") from None
    if len(raw) > MAX_CORPUS_BYTES:
        what = "decompresses to" if gz else "holds"
        raise CorpusError(f"{what} more than {MAX_CORPUS_BYTES >> 20} MiB of text, the most a char_lm corpus may "
                          "hold here (its characters are kept in memory as 8-byte ids)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"is not UTF-8 text ({e})") from None


def lm_splits(text: str) -> Tuple[int, int]:
    """Character offsets where validation and test start (90% / 5% / 5%)."""
    n = len(text)
    return int(n * 0.90), int(n * 0.95)


class Windows:
    """`steps` batches of random `context + 1`-character windows from a resident id tensor."""

    def __init__(self, ids, context: int, batch_size: int, steps: int):
        self.ids, self.context, self.batch_size, self.steps = ids, context, batch_size, steps

    def __len__(self) -> int:
        return self.steps

    def iterate(self, generator=None):
        import torch

        dev = self.ids.device
        span = torch.arange(self.context + 1, device=dev)
        for _ in range(self.steps):
            start = torch.randint(0, len(self.ids) - self.context - 1 + 1, (self.batch_size,),
                                  generator=generator).to(dev)
            w = self.ids[start[:, None] + span]
            yield w[:, :-1], w[:, 1:]


class Consecutive:
    """Every non-overlapping window of a split, in order."""

    def __init__(self, ids, context: int, batch_size: int):
        n = (len(ids) - 1) // context
        self.x = ids[: n * context].view(n, context)
        self.y = ids[1: n * context + 1].view(n, context)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def iterate(self, generator=None):
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]


def _char_lm(task: Task, cfg, device, reg) -> Problem:
    import torch
    import torch.nn.functional as F

    path = corpus_path(cfg, fetch=True)
    text = read_corpus(str(path))
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    a, b = lm_splits(text)
    train_ids, val_ids, test_ids = ids[:a].to(device), ids[a:b].to(device), ids[b:].to(device)
    shape, outputs, extra = shapes(cfg, len(chars))
    model, recipe = build(cfg, reg, shape, outputs, device, **extra)
    batches = Windows(train_ids, cfg.context, cfg.batch_size, cfg.lm_steps)
    cut = cfg.lm_eval_chars or None  # every epoch reads the validation part: a bounded one
    evals = {"val": Consecutive(val_ids[:cut], cfg.context, cfg.eval_batch_size),
             "test": Consecutive(test_ids[:cut], cfg.context, cfg.eval_batch_size)}

    def loss(m, batch, detail):
        x, y = batch
        logits = m(x)
        data_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        return objective, data_loss, x.numel(), {}

    def evaluate(m, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
        total = torch.zeros((), device=device, dtype=torch.float64)
        n = 0
        with torch.inference_mode(), autocast():
            for x, y in eval_batches.iterate():
                logits = m(x).float()
                total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").double()
                n += y.numel()
        nats = total.item() / max(n, 1)
        return {"loss": nats, "bpc": nats / math.log(2)}

    def final(m, autocast, out_dir) -> Dict[str, Any]:
        if cfg.sample_len == 0:
            return {}
        g = torch.Generator().manual_seed(cfg.seed)
        prompt = text[b: b + cfg.context]  # the test split's first window
        out = [index[c] for c in prompt]
        was = m.training
        m.eval()
        with torch.inference_mode():
            for _ in range(cfg.sample_len):
                x = torch.tensor(out[-cfg.context:], device=device)[None]
                p = torch.softmax(m(x)[0, -1].float() / cfg.temperature, 0).cpu()
                out.append(int(torch.multinomial(p, 1, generator=g)))
        m.train(was)
        return {"sample_prompt": prompt, "sample": "".join(chars[i] for i in out[len(prompt):]),
                "sample_temperature": cfg.temperature}

    facts = {"corpus": str(path), "corpus_chars": len(text), "vocab": len(chars), "context": cfg.context,
             "split": "by position: first 90% train, next 5% validation, last 5% test",
             "evaluated_chars": {k: len(v.x) * cfg.context for k, v in evals.items()},
             "samples_are": "characters (tokens)"}
    return Problem(model=model, build=recipe, train_batches=batches, splits=tuple(evals), evaluate=evaluate,
                   n_train=a, source=f"{path.name} ({len(text):,} characters, {len(chars)} distinct)",
                   in_shape=(), loss=loss, example_input=lambda dev: torch.zeros(1, cfg.context, dtype=torch.long,
                                                                                 device=dev),
                   metrics=task.metrics, facts=facts, final=final)


# ---------------------------------------------------------------------------------------------


def prepare(task: Task, cfg, device, reg) -> Problem:
    import torch

    # a vanishing gradient is a stream of denormal floats, which x86 CPUs compute at a fraction of
    # their speed (tanh RNN, T = 200, one thread: 810-1,020 ms per step, 140-180 ms flushed);
    # GPUs flush them anyway, so a CPU-vs-GPU comparison flushes them too (the loop resets it per run)
    torch.set_flush_denormal(True)
    problem = _prepare(task, cfg, device, reg)
    problem.facts["flush_denormal"] = True
    return problem


def _prepare(task: Task, cfg, device, reg) -> Problem:
    if task.data in SPLITS:
        return _synthetic(task, cfg, device, reg)
    if task.data == "char_lm":
        return _char_lm(task, cfg, device, reg)
    extra = model_kwargs(cfg, reg)  # rows of images: the classification family's data and metrics
    if cfg.param_budget:
        shape, outputs, rows = shapes(cfg)
        extra["hidden_size"] = fit_width(cfg, reg, shape, outputs, rows)
    problem = classification.prepare(task, cfg, device, reg, model_kwargs=extra)
    problem.metrics = ROW_METRICS
    return problem


def check_budget(cfg, vocab: Optional[int]) -> None:
    """param_budget must hold the narrowest model of the config: said at validation, not once the
    run has started."""
    shape, outputs, extra = shapes(cfg, vocab)
    kw = {"num_layers": cfg.num_layers, "num_heads": cfg.num_heads, **extra}
    try:
        smallest = params_at(cfg, shape, outputs, kw, 1)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    if smallest > cfg.param_budget:
        raise ConfigError(f"param_budget: {cfg.param_budget} parameters are fewer than the smallest {cfg.model} "
                          f"of this config ({smallest:,}); expected at least {smallest:,}")


def check(cfg) -> None:
    """What the keys' own ranges cannot say."""
    if cfg.param_budget and cfg.hidden_size and cfg.hidden_size != TASKS[cfg.task]().defaults.get("hidden_size"):
        raise ConfigError("param_budget: sets hidden_size itself; leave hidden_size unset")
    if cfg.model == "transformer" and cfg.hidden_size and cfg.num_heads and cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"num_heads: hidden_size {cfg.hidden_size} does not divide into {cfg.num_heads} heads")
    if cfg.task not in ("adding", "copy") and cfg.seq_len is not None:
        raise ConfigError(f"seq_len: the synthetic problems' length; task {cfg.task!r} has its own")
    if cfg.param_budget and cfg.task != "char_lm":  # char_lm's vocabulary is known below, from its corpus
        check_budget(cfg, None)
    if cfg.task == "char_lm":
        from ...data.sources import DatasetNotFound

        try:
            path = corpus_path(cfg)
        except DatasetNotFound:
            return  # a named corpus not here (yet): the run says so, as for every dataset
        if not path.is_file():
            raise ConfigError(f"corpus: {path} is not a file; name a UTF-8 text file (.txt or .gz)")
        try:
            text = read_corpus(str(path))
        except CorpusError as e:
            raise ConfigError(f"corpus: {path} {e}") from None
        except OSError as e:
            raise ConfigError(f"corpus: {path} cannot be read ({type(e).__name__}: {e})") from None
        if cfg.param_budget:
            check_budget(cfg, len(set(text)))
        a, b = lm_splits(text)
        shortest = min(a, b - a, len(text) - b)
        if cfg.context is not None and cfg.context + 1 > shortest:
            if shortest < 2:  # no context fits: the corpus is what is wrong
                raise ConfigError(f"corpus: {path} holds {len(text)} characters; its validation and test splits "
                                  f"(5% each) must each hold a context + 1 characters, so context {cfg.context} "
                                  f"needs a corpus of at least {20 * (cfg.context + 1)} characters")
            raise ConfigError(f"context: {cfg.context} characters (+1 target) do not fit in the corpus's shortest "
                              f"split ({shortest} of its {len(text)} characters); use a context below {shortest}")
    else:
        for key in ("corpus", "context", "lm_steps", "lm_eval_chars", "sample_len", "temperature"):
            if getattr(cfg, key) != KEYS[key].default:
                raise ConfigError(f"{key}: a setting of task char_lm; task {cfg.task!r} does not read a corpus")


_WHY = "does not apply to sequence models here (use dropout, grad_clip, l2, early_stopping)"


def _task(name, description, metrics, headline, data, defaults, targets=(), losses=("mse",)) -> Task:
    # label smoothing needs class labels: the row-by-row classifiers have them
    refused = ("batchnorm", "augmentation") + (() if name.endswith("_rows") else ("label_smoothing",))
    return Task(name, description, FAMILY, prepare, metrics, headline=headline, losses=losses, model_family=FAMILY,
                defaults=defaults, targets=targets, data=data, augment=Augment(pad=0, flip=False), check=check, memory=memory,
                refuses={"regularizer": dict.fromkeys(refused, _WHY)})


RNN_DEFAULTS = {"model": "lstm", "hidden_size": 128, "num_layers": 1, "num_heads": 4, "optimizer": "adam",
                "lr": 1e-3}


@TASKS.register
def adding() -> Task:
    """The adding problem, T = 100 by default (10,000 train / 1,000 val / 1,000 test sequences); MSE, baseline 1/6.

    Adam 3e-3: at 1e-3 an LSTM is still on the plateau at T = 50 after the 10 epochs (test MSE
    0.168, skill 0.01); at 3e-3 it reaches MSE 0.0019 (seed 0, hidden 128)."""
    return _task("adding", "adding problem", ADD_METRICS, "mse", "adding",
                 {**RNN_DEFAULTS, "lr": 3e-3, "seq_len": 100, "batch_size": 64, "epochs": 10, "val_size": 1000},
                 targets=(0.05, 0.01))


@TASKS.register
def copy() -> Task:
    """The copy task: recall 10 symbols after a gap of T = 20 blanks by default; per-symbol accuracy, baseline 1/8."""
    return _task("copy", "copy task", COPY_METRICS, "acc", "copy",
                 {**RNN_DEFAULTS, "seq_len": 20, "batch_size": 64, "epochs": 10, "val_size": 1000},
                 targets=(0.5, 0.9, 0.99), losses=("cross_entropy",))


def _rows(dataset: str, label: str) -> Task:
    return _task(f"{dataset}_rows", f"{label} row by row", ROW_METRICS, "acc", dataset,
                 {**RNN_DEFAULTS, "batch_size": 128, "epochs": 5, "val_size": 5000}, targets=(0.8, 0.85, 0.9),
                 losses=("cross_entropy",))


@TASKS.register
def fashion_mnist_rows() -> Task:
    """Fashion-MNIST read row by row: 28 steps of 28 pixels (55,000 train, 5,000 val, 10,000 test)."""
    return _rows("fashion_mnist", "Fashion-MNIST")


@TASKS.register
def mnist_rows() -> Task:
    """MNIST read row by row: 28 steps of 28 pixels (55,000 train, 5,000 val, 10,000 test)."""
    return _rows("mnist", "MNIST")


@TASKS.register
def char_lm() -> Task:
    """Character-level language model on a text corpus (default: Shakespeare's complete works, 5.06 M characters).

    Known good (nanoGPT's CPU shakespeare_char shape): transformer, 4 layers, 4 heads, width 128,
    context 64, batch 12, Adam 1e-3."""
    return _task("char_lm", "character-level language model", LM_METRICS, "loss", "char_lm",
                 {"model": "transformer", "hidden_size": 128, "num_layers": 4, "num_heads": 4, "optimizer": "adam",
                  "lr": 1e-3, "context": 64, "batch_size": 12, "lm_steps": 500, "epochs": 4},
                 targets=(2.5, 2.0, 1.8), losses=("cross_entropy",))


def memory(cfg) -> List[Need]:
    """The resident sequences, the activations a batch keeps for backpropagation and the weights
    (lower bounds: the largest allocations only)."""
    needs: List[Need] = []
    h, layers, batch = cfg.hidden_size or 0, cfg.num_layers or 1, cfg.batch_size or 1
    if cfg.task in SPLITS:
        train, val, test = SPLITS[cfg.task]
        n = (cfg.train_size or train) + (cfg.val_size if cfg.val_size is not None else val) + (cfg.test_size or test)
        key, t = "seq_len", cfg.seq_len or 0
        if cfg.task == "adding":  # values, markers and their stack, float32
            needs.append((key, 12.0 * n * t, f"{n:,} resident sequences of {t:,} steps"))
        else:  # inputs and targets, int64
            t += 2 * COPY_LEN
            needs.append((key, 16.0 * n * t, f"{n:,} resident sequences of {t:,} steps"))
    else:
        key, t = "context", cfg.context or 0
    if cfg.model == "transformer":  # scores, softmax and dropout per head, and the feed-forward block
        heads = cfg.num_heads or 1
        act = 4.0 * layers * (3 * batch * heads * t * t + 12 * batch * t * h)
        weights = 12.0 * h * h * layers
    else:  # per step and layer: the cell's gates and states
        gates = {"lstm": 4, "gru": 3}.get(cfg.model, 1)
        act = 4.0 * layers * batch * t * h * (gates + 2)
        weights = 2.0 * gates * h * h * layers
    needs.append((key, act, f"the activations of a batch of {batch} over {t:,} steps"))
    if h:
        needs.append(("hidden_size", PARAM_BYTES * weights, f"about {weights:,.0f} weights with their gradients "
                      "and optimizer state"))
    return needs


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """char_lm: the text generated at the end, after its prompt, at its temperature."""
    if not isinstance(summary.get("sample"), str):
        return []
    return [Media("generated_text", Table(("prompt", "generated", "temperature"),
                                          ((str(summary.get("sample_prompt", "")), summary["sample"],
                                            summary.get("sample_temperature")),)))]
