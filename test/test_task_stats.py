"""Per-task accuracies without EOS, label accuracy as decoding picks labels, and the epoch's acc_tasks
(the mean over the tasks, as ESPnet's Reporter averages each task's batches)."""

import math

import pytest
import torch
from conftest import EMOTIONS, toy_wave

from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.tasks import HarmoniFuseTask
from espnet_harmonifuse.task_stats import TASK_MEAN, add_task_mean

VOCAB = 9


def logits_predicting(rows):
    """Logits (B, N, VOCAB) whose argmax at each position is the given token (-1: a wrong one, 0)."""
    out = torch.zeros(len(rows), len(rows[0]), VOCAB)
    for b, row in enumerate(rows):
        for i, tok in enumerate(row):
            out[b, i, max(tok, 0)] = 5.0
    return out


def test_per_task_accuracies_leave_out_eos_and_count_whole_labels(make_args):
    model = HarmoniFuseTask.build_model(make_args())
    eos = 8
    # sample 0 (asr): 3 tokens and EOS, the 2nd token wrong; sample 1 (ser): a 2-token label with its
    # 2nd token wrong; sample 2 (ser): a 2-token label all right
    labels = torch.tensor([[-1, 1, 2, 3, eos], [-1, 4, 5, eos, -1], [-1, 6, 7, eos, -1]])
    predicted = [[0, 1, 0, 3, eos], [0, 4, 0, eos, 0], [0, 6, 7, eos, 0]]
    task_id = torch.tensor([0, 1, 1])
    logits = logits_predicting(predicted)
    _, stats, _ = model._loss_and_stats(logits, labels, task_id)
    assert float(stats["acc_asr"]) == pytest.approx(2 / 3)  # with its EOS it would be 3/4
    assert float(stats["acc_ser"]) == pytest.approx(1 / 2)  # whole labels; tokens would give 5/6
    assert float(stats["acc"]) == pytest.approx(8 / 10)  # ESPnet's: every token and EOS of all tasks
    # in validation a label is right when it is the most likely label (the model's label_hits)
    _, stats, _ = model._loss_and_stats(logits, labels, task_id, torch.tensor([True, True, False]))
    assert float(stats["acc_ser"]) == pytest.approx(1 / 2) and float(stats["acc_asr"]) == pytest.approx(2 / 3)
    _, stats, _ = model._loss_and_stats(logits, labels, task_id, torch.tensor([False, True, True]))
    assert float(stats["acc_ser"]) == 1.0
    # a batch of one task: the other's stats are NaN
    _, stats, _ = model._loss_and_stats(logits_predicting(predicted[:1]), labels[:1], task_id[:1])
    assert math.isnan(float(stats["acc_ser"])) and math.isnan(float(stats["loss_ser"]))
    assert float(stats["acc_asr"]) == pytest.approx(2 / 3)


def test_validation_label_accuracy_is_what_decoding_picks(make_args):
    """In eval mode acc_ser counts the utterances whose label decoding (label scoring) returns."""
    args = make_args()
    model = HarmoniFuseTask.build_model(args).eval()
    tok = HarmoniFuseTask.build_tokenizer(args)
    waves = [torch.from_numpy(toy_wave(50 + i, 0.3 + 0.1 * i)) for i in range(4)]
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    decoded = [r["text"] for r in HarmoniFuse(model, args).decode_tensors(speech, lengths, "ser")]
    # the first two references are what decoding picks, the last two another label
    refs = decoded[:2] + [next(e for e in EMOTIONS if e != d) for d in decoded[2:]]
    ids = [torch.tensor(tok.encode(r)) for r in refs]
    text = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1)
    text_lengths = torch.tensor([len(i) for i in ids])
    task_id = torch.ones(4, 1, dtype=torch.long)
    with torch.no_grad():
        parts, _ = model.prefix_parts(speech, lengths, task_id.view(-1))
        hits = model.label_hits(parts, task_id.view(-1), [t[: int(n)] for t, n in zip(text, text_lengths)])
        _, stats, _ = model(speech, lengths, text, text_lengths, task_id)
    assert hits.tolist() == [True, True, False, False]
    assert float(stats["acc_ser"]) == 0.5


def reported_epoch(steps, keys=("acc_asr", "acc_ser")):
    """The Reporter's epoch stats after registering ``steps`` of (stats, weight) and add_task_mean."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("valid") as sub:
        for stats, weight in steps:
            sub.register(stats, weight)
            sub.next()
        add_task_mean(sub, list(keys))
        assert TASK_MEAN in sub.log_message()  # one value per step, as ESPnet's log expects
    return reporter.stats[1]["valid"]


def test_acc_tasks_is_the_mean_of_each_tasks_epoch_value():
    nan = float("nan")
    steps = [({"acc_asr": 0.5, "acc_ser": nan}, 4), ({"acc_asr": nan, "acc_ser": 1.0}, 2),
             ({"acc_asr": 0.8, "acc_ser": nan}, 2), ({"acc_asr": nan, "acc_ser": 0.0}, 6)]
    epoch = reported_epoch(steps)
    assert epoch["acc_asr"] == pytest.approx((0.5 * 4 + 0.8 * 2) / 6)  # over the ASR batches alone
    assert epoch["acc_ser"] == pytest.approx(2 / 8)
    assert epoch[TASK_MEAN] == pytest.approx((0.6 + 0.25) / 2)
    # a per-batch value would weigh the tasks by their batches: not the mean of the tasks
    assert epoch[TASK_MEAN] != pytest.approx((0.5 * 4 + 2 + 0.8 * 2) / 14)
    one_task = reported_epoch([({"acc_asr": 0.5}, 1), ({"acc_asr": 0.7}, 1)], keys=("acc_asr", "acc_ser"))
    assert one_task[TASK_MEAN] == pytest.approx(0.6)  # a task without batches is left out
