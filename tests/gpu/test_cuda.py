"""The CUDA tests: what only a GPU can check (AMP fp16 with its gradient scaler, bf16, compile,
channels_last, data resident on the GPU, checkpoint/resume on the GPU, benchmark mode's CUDA
events and datasheet peak). Marked `cuda` and skipped without a GPU, so CI (which has none)
collects and skips them; tests/gpu/check.sh runs them on a GPU machine (`-m cuda`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dl2bench.train import bench as B
from dl2bench.train import run

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CURVE = ("epoch", "train_loss", "val_loss", "val_acc")


@pytest.fixture
def gpu(tiny):
    return {**tiny, "device": "cuda", "task": "cifar10", "model": "lenet", "epochs": 2}


def rows(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_fp16_amp_trains_with_its_scaler(gpu, tmp_path, monkeypatch):
    import dl2bench.train.loop as T

    seen = {}
    real = T.Trainer.setup

    def spy(self):
        prepared = real(self)
        seen["scaler"] = getattr(prepared.step, "scaler", None)
        return prepared

    monkeypatch.setattr(T.Trainer, "setup", spy)
    s = run({**gpu, "precision": "fp16"}, tmp_path)
    assert s["status"] == "finished", s.get("error")
    assert isinstance(seen["scaler"], torch.amp.GradScaler) and seen["scaler"].get_scale() > 0
    assert s["device"] == "cuda" and all(r["train_loss"] == r["train_loss"] for r in rows(tmp_path))
    assert s["best_val_acc"] > 0.3


def test_bf16_trains(gpu, tmp_path):
    s = run({**gpu, "precision": "bf16"}, tmp_path)
    assert s["status"] == "finished" and s["best_val_acc"] > 0.3, s.get("error")


def test_compile_on_gpu(gpu, tmp_path):
    s = run({**gpu, "compile": True, "epochs": 1}, tmp_path)
    assert s["status"] == "finished", s.get("error")


def test_channels_last_matches_the_default_layout(gpu, tmp_path):
    a = run({**gpu, "deterministic": True}, tmp_path / "a")
    b = run({**gpu, "deterministic": True, "channels_last": True}, tmp_path / "b")
    assert a["status"] == b["status"] == "finished"
    # the same arithmetic in another memory order: close, not bit-identical (kernels differ)
    assert abs(rows(tmp_path / "a")[-1]["train_loss"] - rows(tmp_path / "b")[-1]["train_loss"]) < 0.05


def test_resident_data_lives_on_the_gpu(gpu, tmp_path, monkeypatch):
    import dl2bench.train.loop as T

    seen = {}
    real = T.Trainer.setup

    def spy(self):
        prepared = real(self)
        seen["x"] = prepared.train_batches.x.device.type
        seen["dtype"] = prepared.train_batches.x.dtype
        return prepared

    monkeypatch.setattr(T.Trainer, "setup", spy)
    s = run({**gpu, "loader": "tensor"}, tmp_path)
    assert s["status"] == "finished" and seen == {"x": "cuda", "dtype": torch.uint8}


def test_dataloader_with_pinned_memory_on_gpu(gpu, tmp_path):
    s = run({**gpu, "loader": "dataloader", "num_workers": 2, "epochs": 1}, tmp_path)
    assert s["status"] == "finished", s.get("error")


def test_checkpoint_resume_on_gpu(gpu, tmp_path, killed_then_resumed):
    cfg = {**gpu, "epochs": 3, "deterministic": True}
    full = run(cfg, tmp_path / "full")
    resumed = killed_then_resumed(cfg, tmp_path / "cut", at=2)
    a, b = rows(tmp_path / "full"), rows(tmp_path / "cut")
    assert [r["epoch"] for r in b] == [1, 2, 3] and resumed["resumes"] == 1
    for x, y in zip(a, b):
        for k in CURVE:
            assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-6), k
    assert resumed["test_acc"] == pytest.approx(full["test_acc"], abs=1e-6)


@pytest.mark.parametrize("precision, opts", [("fp32", {}), ("bf16", {}), ("fp16", {}),
                                             ("bf16", {"compile": True, "channels_last": True}),
                                             ("fp32", {"loader": "dataloader", "num_workers": 2})],
                         ids=["fp32", "bf16", "fp16", "bf16-compile-channels_last", "fp32-dataloader"])
def test_benchmark_mode_on_gpu(gpu, tmp_path, precision, opts):
    s = run({**gpu, "mode": "benchmark", "precision": precision, "bench_repeats": 3, "bench_seconds": 0.5,
             "warmup_steps": 3, "infer_batch_size": 512, **opts}, tmp_path)
    assert s["status"] == "finished", s.get("error")
    assert s["bench_timer"] == "cuda events" and s["peak_mem_mb"] > 0 and "max_memory_allocated" in s["peak_mem_what"]
    assert s["train_samples_per_s_min"] <= s["train_samples_per_s_median"] <= s["train_samples_per_s_max"]
    assert 0 < s["train_fraction_of_peak"] < 1.5
    name = torch.cuda.get_device_name()
    if B.known_peak(name, precision) is not None:
        assert s["peak_kind"] == "datasheet" and "datasheet" in s["peak_source"]
    else:
        assert s["peak_kind"] == "measured"
