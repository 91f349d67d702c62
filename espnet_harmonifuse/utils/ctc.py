"""The CTC loss of the models' auxiliary heads (HarmoniFuse's ``ctc_weight``, the encoder pre-training)
and greedy CTC decoding."""

from typing import List

import torch


def ctc_per_utterance(logits: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor,
                      text_lengths: torch.Tensor) -> torch.Tensor:
    """CTC of ``logits`` (B, T, V + 1; the blank is the last class) against ``text`` (B, N; padding
    below 0), summed over the batch and divided by its utterances; impossible alignments count 0."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return torch.nn.functional.ctc_loss(
        logp.transpose(0, 1), text.clamp(min=0), lengths, text_lengths,
        blank=logp.size(-1) - 1, reduction="sum", zero_infinity=True,
    ) / text.size(0)


def ctc_greedy(logits: torch.Tensor, blank: int) -> List[int]:
    """The greedy CTC labels of one utterance's ``logits`` (T, V): the best class per frame, repeats
    merged, blanks dropped."""
    best = logits.argmax(-1).tolist()
    return [b for i, b in enumerate(best) if b != blank and (i == 0 or b != best[i - 1])]
