"""The engine interface (focusstack.engines.base) and lazy references (focusstack.lazy)."""

from __future__ import annotations

import numpy as np
import pytest

from focusstack.engines.base import Engine, Stepped
from focusstack.engines.decision import DecisionEngine
from focusstack.engines.hybrid import HybridEngine
from focusstack.io.steps import step_files
from focusstack.lazy import call, load


def _frames(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.random((48, 64, 3), dtype=np.float32)
    blurred = np.repeat(np.repeat(base[::4, ::4], 4, axis=0), 4, axis=1)
    left = base.copy()
    left[:, 32:] = blurred[:, 32:]
    right = base.copy()
    right[:, :32] = blurred[:, :32]
    return [left, right]


@pytest.mark.parametrize("engine", [DecisionEngine(), HybridEngine(None)], ids=["decision", "hybrid"])
def test_engines_satisfy_the_interface(engine):
    assert isinstance(engine, Engine)
    out = engine.fuse(_frames())
    assert out.shape == (48, 64, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert isinstance(engine.precision_reason, str) and engine.precision_reason
    assert list(engine.fallbacks) == []


def test_a_stepped_engine_returns_its_maps_as_data_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = HybridEngine(None)
    assert isinstance(engine, Stepped) and not isinstance(DecisionEngine(), Stepped)
    steps = engine.steps(_frames(1))
    np.testing.assert_array_equal(steps.fused, engine.fuse(_frames(1)))
    assert set(steps.visualise()) <= set(engine.step_images)
    assert {f"{n}.png" for n in steps.visualise()} < set(step_files(engine.step_images))
    assert list(tmp_path.iterdir()) == []  # no file written by the engine


def test_lazy_references_resolve_and_refuse_a_malformed_one():
    assert load("focusstack.engines.decision:DecisionEngine") is DecisionEngine
    assert load("focusstack.metrics:basic").__name__ == "focusstack.metrics.basic"  # a submodule
    assert load("focusstack.engines.decision:DecisionEngine.name") == "decision"  # dotted
    assert call("focusstack.ops.color:luminance", np.ones((2, 2, 3), np.float32)).shape == (2, 2)
    with pytest.raises(ValueError, match="package.module:name"):
        load("focusstack.engines.decision.DecisionEngine")
    with pytest.raises(AttributeError):
        load("focusstack.engines.decision:NoSuchEngine")
