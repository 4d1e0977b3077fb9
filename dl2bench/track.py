"""Tracking: the local results store always (config.json, metrics.jsonl, summary.json), and W&B
as a mirror (online / offline / disabled) that may fail without costing training or the record."""
from __future__ import annotations

import contextlib
import json
import netrc
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import media as M
from . import wandb_view as V
from .runs import CONFIG, METRICS, SUMMARY, clean, maybe_json, write_json, write_lines

# where the user asked wandb to stage files, read once: Tracker sets it per run otherwise
_USER_DATA_DIR = os.environ.get("WANDB_DATA_DIR")
WANDB_ID = "dl2bench_id"  # in the run's wandb/ folder: the W&B id of its current attempt


def wandb_mode(requested: str) -> str:
    """auto -> $WANDB_MODE if set, else online when an API key is configured, else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return {"dryrun": "offline", "run": "online"}.get(os.environ["WANDB_MODE"], os.environ["WANDB_MODE"])
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        if netrc.netrc().authenticators(host):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class Tracker:
    """One run's record. Every W&B call is guarded: a failure warns once and W&B is dropped."""

    def __init__(self, cfg, out_dir: Path, run_id: str):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg, self.run_id = cfg, run_id
        write_json(self.out / CONFIG, {**cfg.to_dict(), "run_id": run_id})
        self.metrics_path = self.out / METRICS
        self.mode = wandb_mode(cfg.wandb)
        self.wb = None
        self.owns_run = True

    # -- local store -----------------------------------------------------------------------
    def restart_metrics(self, history: List[Dict]) -> None:
        """Make metrics.jsonl hold exactly `history` (after a resume: nothing logged twice)."""
        write_lines(self.metrics_path, history)

    def logged_epochs(self) -> set:
        """Epochs metrics.jsonl holds whole (a torn last line is not one)."""
        out = set()
        try:
            lines = self.metrics_path.read_text().splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                out.add(json.loads(line)["epoch"])
            except (ValueError, KeyError, TypeError):
                pass
        return out

    def mirrored_epochs(self) -> set:
        """Epochs W&B already holds for this run (call before start_wandb): offline, what its
        records on disk say; online, what metrics.jsonl holds (each line goes to W&B right after)."""
        local = self.logged_epochs()
        if self.mode != "offline":
            return local
        try:
            from .wandb_log import logged_epochs

            return set(logged_epochs(self.out, self._attempt_id() or self.run_id))
        except Exception as e:  # noqa: BLE001 - a wandb whose format moved on: the best guess
            warnings.warn(f"cannot read W&B's offline records in {self.out / 'wandb'} ({type(e).__name__}: {e}); "
                          "assuming W&B has what metrics.jsonl has", RuntimeWarning, stacklevel=2)
            return local

    def mirror(self, row: Dict) -> None:
        """W&B only: an epoch the local record has but W&B never got (see Trainer.fit)."""
        self._wandb("log", lambda: self.wb.log(V.row(clean(row))))

    def log(self, row: Dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(clean(row)) + "\n")
            f.flush()
        self._wandb("log", lambda: self.wb.log(V.row(clean(row))))

    def finish(self, summary: Dict, media: Sequence = (), model: Optional[Path] = None) -> None:
        """`media`: the family's pictures and tables (dl2bench.media); `model`: the model.pt this
        run trained, sent as its model artifact. Both W&B only: the local record already has them."""
        write_json(self.out / SUMMARY, summary)
        if self.wb is not None:
            with self._staging_here():
                self._media_and_model(summary, media, model)
            self._wandb("summary", lambda: self.wb.summary.update(V.summary(clean(summary))))
            if self.owns_run:
                self._wandb("finish", lambda: self.wb.finish(exit_code=0 if summary.get("status") != "failed" else 1))
            self.wb = None

    def _media_and_model(self, summary: Dict, media: Sequence, model: Optional[Path]) -> None:
        for item in media:
            self._optional(f"image {item.key}", lambda item=item: self.wb.log(
                {item.key: _to_wandb(item.value), "epoch": item.epoch if item.epoch is not None
                 else int(summary.get("epochs") or 0)}))
        if model is not None and summary.get("status") != "failed":
            self._optional("model artifact", lambda: self._log_model(Path(model), summary))

    @contextlib.contextmanager
    def _staging_here(self):
        """wandb stages a table's files (and any copied artifact file) under $WANDB_DATA_DIR, by
        default in $HOME, until a sync uploads them: a cluster's runs would fill a home quota, and
        the record would point outside its run. Here they stay in the run's own wandb/ folder,
        unless the user chose a place (WANDB_DATA_DIR set before dl2bench started)."""
        if _USER_DATA_DIR is not None:
            yield
            return
        before = os.environ.get("WANDB_DATA_DIR")
        os.environ["WANDB_DATA_DIR"] = str(self.out / "wandb" / "data")
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("WANDB_DATA_DIR", None)
            else:
                os.environ["WANDB_DATA_DIR"] = before

    # -- W&B mirror ------------------------------------------------------------------------
    def _log_model(self, path: Path, summary: Dict) -> None:
        import wandb

        art = wandb.Artifact(V.model_artifact(self.run_id), type="model",
                             description=f"{self.cfg.task} {self.cfg.model}, trained by run {self.run_id}",
                             metadata={"run_id": self.run_id, "recipe": clean(self.cfg.recipe()),
                                       **{V.key(k): v for k, v in clean(summary).items()
                                          if k.startswith(("test_", "best_val_")) and isinstance(v, (int, float))}})
        # wandb's default policy copies the file into a staging folder in $HOME until the sync (a
        # cluster's 50,000 runs would fill a home quota), and a plain reference would upload whatever
        # model.pt holds at sync time (a --force rerun rewrites it). A hard link beside the attempt's
        # record costs no space and keeps this attempt's weights: model.pt is replaced by a rename.
        snap = self.out / "wandb" / f"model-{self.wb.id}.pt"
        snap.parent.mkdir(exist_ok=True)  # a sweep agent's run keeps its records elsewhere
        try:
            snap.unlink(missing_ok=True)
            os.link(path, snap)
        except OSError:  # a file system without hard links: a copy, still in the run's own folder
            shutil.copyfile(path, snap)
        art.add_file(str(snap), name=path.name, policy="immutable")
        self.wb.log_artifact(art, aliases=["latest", f"run-{self.run_id}"])

    def _use_models(self, run, uses: Dict[str, str]) -> None:
        """Online: the trained runs this one loads, as uses of their model artifacts (W&B lineage).
        Offline, wandb cannot use an artifact ("Cannot use artifact when in offline mode"): the
        config's `uses` keeps the names and `python -m dl2bench.wandb_lineage` declares them after a sync."""
        if self.mode != "online":
            return
        for key, rid in uses.items():
            self._optional(f"lineage ({key})", lambda rid=rid: run.use_artifact(f"{V.model_artifact(rid)}:latest",
                                                                              type="model"))

    def _optional(self, what: str, fn) -> None:
        """A W&B extra (a picture, an artifact, a lineage edge) that may fail without dropping the
        run's W&B record: say so once per kind and go on."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"W&B {what} not recorded ({type(e).__name__}: {e}); the local record in {self.out} has it",
                          RuntimeWarning, stacklevel=2)

    def _attempt_id(self):
        """The W&B id of the attempt that last started W&B here; None if none did."""
        try:
            return (self.out / "wandb" / WANDB_ID).read_text().strip() or None
        except OSError:  # a run recorded before the id file: its offline folders are under the run id
            return self.run_id if any((self.out / "wandb").glob("*run-*")) else None

    def _swept(self):
        """The keys this run's sweep varies (its folder's swept.json); None for a run outside a sweep."""
        keys = (maybe_json(self.out.parent / V.SWEPT) or {}).get("keys")
        return [str(k) for k in keys] if isinstance(keys, list) else None

    def wandb_id(self, resumed: bool) -> str:
        """The run id, and for each later fresh attempt (a --force rerun after the run had finished)
        the run id with an attempt suffix: one W&B id per training, so a sync never interleaves two
        trainings' epochs, and a run deleted in the W&B UI does not block its config forever. A
        resumed attempt (requeued, killed) continues under the id it started with."""
        last = self._attempt_id()
        if last is None or resumed:
            wid = last or self.run_id
        else:
            _, _, n = last.partition("-")
            wid = f"{self.run_id}-{int(n) + 1 if n.isdigit() else 2}"
        (self.out / "wandb").mkdir(exist_ok=True)
        (self.out / "wandb" / WANDB_ID).write_text(wid + "\n")
        return wid

    def start_wandb(self, resumed: bool, job_type: str = "train", declared=(), uses: Optional[Dict[str, str]] = None) -> None:
        """`declared`: the task's metric declarations ({name, goal, splits}), so W&B's run table
        shows each validation metric's best in its direction. `uses`: config key -> the run id of a
        trained run this one loads (its model artifact is used: W&B lineage)."""
        uses = dict(uses or {})
        if self.mode == "disabled":
            return
        # design.md: the mode must be in the environment, or wandb still looks up the network at exit
        os.environ["WANDB_MODE"] = self.mode
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_DISABLE_GIT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        # only the run's own keys: another family's defaults (attack: pgd on a classifier) would
        # make a W&B filter on them match every run
        config = {**self.cfg.recipe(), "run_id": self.run_id}
        if uses:
            config[V.USES] = {k: V.model_artifact(rid) for k, rid in uses.items()}

        def define(run):
            run.define_metric("epoch")
            run.define_metric("*", step_metric="epoch")
            for spec in V.metric_definitions(declared):
                run.define_metric(**spec)

        def init():
            import wandb

            cfg = self.cfg
            token = re.match(r"^\w+-(\d+)-", os.environ.get("WANDB_SERVICE", ""))
            if wandb.run is None and token and int(token.group(1)) != os.getpid():
                # a service another process started (a notebook, the shell that submitted this job,
                # a killed earlier attempt): its streams are not ours; "run ID in use" follows
                os.environ.pop("WANDB_SERVICE")
            if wandb.run is not None:  # a W&B sweep agent started this run: mirror into it
                self.owns_run = False  # and leave finishing it to the agent
                wandb.run.config.update(config, allow_val_change=True)
                define(wandb.run)
                self._use_models(wandb.run, uses)
                return wandb.run
            run = wandb.init(
                project=cfg.project, entity=cfg.entity or None, group=cfg.group or None,
                tags=[t.strip() for t in cfg.tags.split(",") if t.strip()] or None,
                name=V.name(cfg.to_dict(), self._swept(), self.run_id), job_type=job_type,
                id=self.wandb_id(resumed), resume="allow", dir=str(self.out), mode=self.mode,
                config=config, reinit="finish_previous")
            define(run)
            self._use_models(run, uses)
            return run

        self.wb = self._wandb("init", init)

    def _wandb(self, what: str, fn):
        if what != "init" and self.wb is None:
            return None
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - the local record must survive any W&B failure
            warnings.warn(f"W&B {what} failed ({type(e).__name__}: {e}); continuing with the local "
                          f"record only in {self.out}", RuntimeWarning, stacklevel=2)
            started = self.wb
            if started is None and what == "init" and self.owns_run:
                # failed after wandb.init (a define_metric): a run left open would take the next
                # packed run's logs ("a sweep agent started this run: mirror into it")
                import wandb

                started = wandb.run
            if started is not None:
                try:
                    started.finish(exit_code=1)
                except Exception:  # noqa: BLE001
                    pass
            if isinstance(e, ConnectionError) and self.owns_run:
                # the service process is gone: tear down our end now, or wandb's atexit hook prints
                # a traceback about it when the run has long finished (the next run starts a new one)
                try:
                    import wandb

                    wandb.teardown()
                except Exception:  # noqa: BLE001
                    pass
            self.wb = None
            return None


def _to_wandb(value: Any) -> Any:
    """A dl2bench.media item as W&B's own object (an Image with its masks, a Table of cells)."""
    import wandb

    if isinstance(value, M.Image):
        masks = None
        if value.masks:
            ids = sorted({int(i) for m in value.masks.values() for i in np.unique(m)})
            labels = {i: (value.classes[i] if i < len(value.classes) else str(i)) for i in ids}
            masks = {k: {"mask_data": m, "class_labels": labels} for k, m in value.masks.items()}
        return wandb.Image(value.pixels, caption=value.caption or None, masks=masks)
    if isinstance(value, M.Table):
        return wandb.Table(columns=list(value.columns), data=[[_to_wandb(c) for c in row] for row in value.rows])
    return value
