"""The core's denoiser contract: ``predict`` asks a batching host once for the base and the extras,
and any other model for the base and then each extra."""
import pytest
import torch

from dreamsampler_core.denoiser import BatchingDenoiser, predict


class Batching:
    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma):
        self.calls.append(("base", ()))
        return x

    def predict_many(self, x, sigma, names):
        self.calls.append(("many", tuple(names)))
        return x, {n: x + i + 1 for i, n in enumerate(names)}


def test_predict_asks_a_batching_denoiser_once_and_returns_its_extras():
    model, x = Batching(), torch.zeros(1)
    extras = {"a": lambda x, s: pytest.fail("asked alone"), "b": lambda x, s: pytest.fail("asked alone")}
    assert isinstance(model, BatchingDenoiser)
    base, preds = predict(model, extras, ("b", "a"), x, 1.0)
    assert model.calls == [("many", ("b", "a"))]
    assert torch.equal(base, x) and preds["b"].item() == 1.0 and preds["a"].item() == 2.0
    model.calls.clear()
    base, preds = predict(model, extras, (), x, 1.0)
    assert model.calls == [("base", ())] and preds == {}


def test_predict_on_a_plain_denoiser_asks_each_extra_and_checks_names_first():
    x, asked = torch.zeros(1), []

    def model(x, sigma):
        asked.append("base")
        return x

    assert not isinstance(model, BatchingDenoiser)
    extras = {"t": lambda x, s: asked.append("t") or x + 3}
    base, preds = predict(model, extras, ("t",), x, 0.5)
    assert asked == ["base", "t"] and preds["t"].item() == 3.0
    asked.clear()
    with pytest.raises(KeyError, match="no prediction named 'u'"):
        predict(model, extras, ("u",), x, 0.5)
    with pytest.raises(KeyError, match="the host gave none"):
        predict(model, None, ("t",), x, 0.5)
    assert asked == []
