"""One parametrized test over every registered model (and the hybrid's stages)."""
from __future__ import annotations

import pytest
import torch

from models import MODEL_NAMES, ModelConfig, build_model, count_parameters

F, C = 12, 38
CASES = [ModelConfig(name=n, hidden=16, tcn_layers=3) for n in MODEL_NAMES] + [
    ModelConfig(name="hybrid", hidden=16, tcn_layers=2, stage=s) for s in ("lstm", "attention")
]
IDS = [f"{c.name}-{c.stage}" if c.name == "hybrid" else c.name for c in CASES]


def _batch(T=64, lengths=(64, 40)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(lengths), T, F, generator=g) * 3 + 1
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T), True = real frame
    return x, mask


@pytest.mark.parametrize("cfg", CASES, ids=IDS)
def test_model_contract(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, in_features=F, num_classes=C).eval()
    model.set_normalization(torch.ones(F), torch.full((F,), 3.0))
    x, mask = _batch()
    with torch.no_grad():
        out = model(x, mask)
        assert out.shape == (2, 64, C)
        assert torch.isfinite(out).all()

        # garbage (even NaN) in padded frames changes nothing on real frames
        x2 = x.clone()
        x2[1, 40:] = torch.randn(24, F) * 100
        x2[1, 50] = float("nan")
        out2 = model(x2, mask)
        torch.testing.assert_close(out2[1, :40], out[1, :40], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out2[0], out[0])

        # a padded sequence gives the same real-frame outputs as the same sequence alone, unpadded
        alone = model(x[1:2, :40], mask[1:2, :40])
        torch.testing.assert_close(alone[0], out[1, :40], rtol=1e-5, atol=1e-5)

    # gradients reach every parameter
    model.train()
    out = model(x, mask)
    out[mask].logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"
    assert count_parameters(model) > 0


def test_normalization_buffers_travel_in_state_dict():
    model = build_model(ModelConfig(name="tcn", hidden=8, tcn_layers=1), in_features=3)
    model.set_normalization([1.0, 2.0, float("nan")], [2.0, 0.0, 1.0])
    sd = model.state_dict()
    # NaN mean -> 0; std 0 -> 1 (a constant feature is only centred)
    assert sd["x_mean"].tolist() == [1.0, 2.0, 0.0]
    assert sd["x_std"].tolist() == [2.0, 1.0, 1.0]
    fresh = build_model(ModelConfig(name="tcn", hidden=8, tcn_layers=1), in_features=3)
    fresh.load_state_dict(sd)
    assert fresh.x_std.tolist() == [2.0, 1.0, 1.0]


@pytest.mark.parametrize("bad", [dict(name="transformer"), dict(kernel_size=4), dict(hidden=0),
                                 dict(stage="attention", hidden=10, heads=4), dict(dropout=1.0)])
def test_model_config_rejects(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_tcn_receptive_field():
    from models.tcn import TCN, TCNConfig

    # kernel 3, dilations 1, 2, 4: 1 + 2 * (1 + 2 + 4) = 15 frames
    assert TCN(TCNConfig(hidden=4, tcn_layers=3), 2).receptive_field() == 15


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_condition_actions_reads_the_candidate_actions(name):
    """With condition_actions the pair's whitelist is an input: changing it changes the logits, the checkpoint
    rebuilds with the same input width, and a conditioned model refuses to run without it."""
    from models.checkpoint import rebuild_model

    torch.manual_seed(0)
    cfg = ModelConfig(name=name, hidden=16, tcn_layers=2, condition_actions=True)
    model = build_model(cfg, in_features=F, num_classes=C).eval()
    x, mask = _batch()
    a1 = torch.zeros(2, C, dtype=torch.bool)
    a1[:, [0, 3]] = True
    a2 = a1.clone()
    a2[:, 7] = True
    with torch.no_grad():
        assert not torch.allclose(model(x, mask, a1), model(x, mask, a2))
        again = rebuild_model({"model": cfg.to_dict()}, model.state_dict()).eval()
        torch.testing.assert_close(again(x, mask, a1), model(x, mask, a1))
        plain = build_model(ModelConfig(name=name, hidden=16, tcn_layers=2), F, C).eval()
        torch.testing.assert_close(plain(x, mask, a1), plain(x, mask))  # unconditioned models ignore it
    with pytest.raises(ValueError, match="candidate actions"):
        model(x, mask)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_lab_embedding_and_unknown_lab_fallback(name):
    """A lab-conditioned model's output depends on the lab; a lab it never saw (or None) uses row 0, the
    learned 'unknown lab' vector; the checkpoint rebuilds the vocabulary from its config."""
    from models.checkpoint import rebuild_model

    torch.manual_seed(0)
    cfg = ModelConfig(name=name, hidden=16, tcn_layers=2, lab_embedding=4, labs=["LabA", "LabB"])
    model = build_model(cfg, in_features=F, num_classes=C).eval()
    assert model.lab_index(["LabB", "LabA", "NewLab"]).tolist() == [2, 1, 0]
    with torch.no_grad():
        model.lab_emb.weight.copy_(torch.arange(12, dtype=torch.float32).view(3, 4))  # three distinct rows
    x, mask = _batch()
    with torch.no_grad():
        a, b = (model(x, mask, None, model.lab_index([lab] * 2)) for lab in ("LabA", "LabB"))
        unseen = model(x, mask, None, model.lab_index(["NewLab"] * 2))
        assert not torch.allclose(a, b) and not torch.allclose(a, unseen)
        torch.testing.assert_close(unseen, model(x, mask))  # no lab given = unknown lab
        again = rebuild_model({"model": cfg.to_dict()}, model.state_dict()).eval()
        assert again.labs == ["LabA", "LabB"]
        torch.testing.assert_close(again(x, mask, None, again.lab_index(["LabB"] * 2)), b)
    # in training, lab_dropout shows a share of windows as unknown (how row 0 learns)
    model.train()
    lab = model.lab_index(["LabA"] * 2000)
    emb = []
    model.lab_emb.register_forward_hook(lambda m, i, o: emb.append(i[0]))
    torch.manual_seed(1)
    model(torch.zeros(2000, 4, F), torch.ones(2000, 4, dtype=torch.bool), None, lab)
    assert 0.05 < float((emb[0] == 0).float().mean()) < 0.15  # lab_dropout 0.1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_lab_bias_and_film_start_as_the_pooled_model_and_fall_back_to_row_0(name):
    """model.lab_bias adds row lab_index(lab) of a (labs + 1, C) table to every frame's logits, model.lab_film
    maps the standardised input x -> x * (1 + g) + b with (g, b) that lab's row: both zero at init (the pooled
    model exactly), row 0 for an unseen lab or None; inference (ensemble.infer) passes the lab to them."""
    from ensemble.infer import InferSettings, sliding_probs
    from models.checkpoint import rebuild_model

    cfg = ModelConfig(name=name, hidden=16, tcn_layers=2, lab_bias=True, lab_film=True, labs=["LabA", "LabB"])
    assert cfg.uses_lab
    torch.manual_seed(0)
    model = build_model(cfg, in_features=F, num_classes=C).eval()
    torch.manual_seed(0)
    plain = build_model(ModelConfig(name=name, hidden=16, tcn_layers=2), F, C).eval()  # mean 0, std 1
    x, mask = _batch()
    lab_b = model.lab_index(["LabB"] * 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask, None, lab_b), plain(x, mask))  # zero at init: pooled
        model.lab_bias.copy_(torch.randn(3, C))  # rows differ by more than a constant (softmax ignores that)
        model.lab_film.copy_(torch.randn(3, 2 * F) / 4)

        def expect(row):
            g, b = model.lab_film[row, :F], model.lab_film[row, F:]
            return plain(x * (1 + g) + b, mask) + model.lab_bias[row]

        torch.testing.assert_close(model(x, mask, None, lab_b), expect(2))
        unseen = model.lab_index(["NewLab"] * 2)
        torch.testing.assert_close(model(x, mask, None, unseen), expect(0))
        torch.testing.assert_close(model(x, mask), expect(0))  # no lab given = unknown lab
        again = rebuild_model({"model": cfg.to_dict()}, model.state_dict()).eval()
        torch.testing.assert_close(again(x, mask, None, lab_b), expect(2))
        want = torch.softmax(expect(2)[0], dim=-1).numpy()
    s = InferSettings(window=64, stride=64, trim=0)
    got = sliding_probs(model, x[:1].numpy(), torch.ones(1, C, dtype=torch.bool).numpy(), s, lab="LabB")[0]
    assert abs(got - want).max() < 1e-5
