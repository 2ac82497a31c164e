"""tune/ema.py: the EMA weights against the recurrence computed by hand."""
from __future__ import annotations

import pytest
import torch

from tune.ema import EMA


def test_ema_hand_values_with_warmup():
    lin = torch.nn.Linear(1, 1, bias=False)
    lin.register_buffer("steps", torch.zeros((), dtype=torch.int64))
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, 0.5)
    # update 1: d = min(0.5, 2/11) = 2/11; update 2: d = min(0.5, 3/12) = 1/4; update 3: min(0.5, 4/13) = 4/13
    # update 9: min(0.5, 10/19) = 0.5 (the decay itself from then on)
    expect = 0.0
    for n, w in enumerate([1.0, 2.0, 4.0], start=1):
        with torch.no_grad():
            lin.weight.fill_(w)
            lin.steps.fill_(n)
        d = {1: 2 / 11, 2: 1 / 4, 3: 4 / 13}[n]
        assert ema.rate() == pytest.approx(d)
        ema.update(lin)
        expect = d * expect + (1 - d) * w
        assert float(ema.model.weight) == pytest.approx(expect)
        assert int(ema.model.steps) == n  # integer buffers are copied
    assert expect == pytest.approx((1 / 4 * 9 / 11 + 3 / 4 * 2) * 4 / 13 + 9 / 13 * 4)  # 3.2937
    ema.updates = 8
    assert ema.rate() == 0.5
    assert float(lin.weight.detach()) == 4.0 and not ema.model.weight.requires_grad  # raw model untouched


def test_ema_resume_restores_weights_and_counter():
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, 0.9)
    for _ in range(3):
        with torch.no_grad():
            lin.weight.add_(1.0)
        ema.update(lin)
    again = EMA(torch.nn.Linear(2, 1), 0.9)
    again.load_state_dict(ema.state_dict(), ema.model.state_dict())
    assert again.updates == 3 and torch.equal(again.model.weight, ema.model.weight)
    with pytest.raises(ValueError):
        EMA(lin, 0.0)
