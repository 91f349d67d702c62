"""The model's token loss on known inputs: label smoothing (model_conf.lsm_weight)."""

import pytest
import torch

from espnet_harmonifuse.tasks import HarmoniFuseTask


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_loss_on_known_logits(make_args, eps):
    """model_conf.lsm_weight: (1 - eps) * NLL + eps * mean over the vocabulary of -log p, per real
    token (padding left out), each task's stats over its own samples; 0 is plain cross-entropy."""
    model = HarmoniFuseTask.build_model(make_args(model_conf={"lsm_weight": eps}))
    gen = torch.Generator().manual_seed(0)
    vocab = 7
    logits = torch.randn(2, 4, vocab, generator=gen) * 3
    labels = torch.tensor([[1, 4, 2, -1], [5, 0, -1, -1]])  # sample 0: asr (3 tokens), 1: ser (2)
    loss, stats, _ = model._loss_and_stats(logits, labels, torch.tensor([0, 1]))
    logp = torch.log_softmax(logits.double(), -1)
    per_tok = {}
    for b in range(2):
        per_tok[b] = [
            -(1 - eps) * logp[b, i, int(y)] - eps * logp[b, i].mean() for i, y in enumerate(labels[b]) if y >= 0
        ]
    assert float(stats["loss_asr"]) == pytest.approx(float(sum(per_tok[0]) / 3), rel=1e-5)
    assert float(stats["loss_ser"]) == pytest.approx(float(sum(per_tok[1]) / 2), rel=1e-5)
    assert float(loss) == pytest.approx(float((sum(per_tok[0]) + sum(per_tok[1])) / 5), rel=1e-5)
    if eps > 0:  # smoothing moves the loss away from the plain NLL
        nll = -sum(float(logp[b, i, int(y)]) for b in range(2) for i, y in enumerate(labels[b]) if y >= 0) / 5
        assert abs(float(loss) - nll) > 1e-3


def test_label_smoothing_weight_must_be_below_one(make_args):
    with pytest.raises(ValueError, match=r"lsm_weight must be in \[0, 1\)"):
        HarmoniFuseTask.build_model(make_args(model_conf={"lsm_weight": 1.0}))
