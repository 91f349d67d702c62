"""Batched decoding from left-padded ``[prompt ; speech]`` prefixes: greedy, beam, label scoring."""

from typing import List, Sequence, Tuple

import torch

from espnet_harmonifuse.decoder.abs_decoder import AbsDecoder

Hyp = Tuple[List[int], float]  # (tokens without EOS, total log-probability)


def _step(decoder, tok, mask, pos, cache, embeds, positions, use_cache):
    """Feed one token per row; without a cache, rerun the whole sequence."""
    tok_emb = decoder.embed(tok.unsqueeze(1)).to(embeds.dtype)
    mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
    if use_cache:
        logits, cache = decoder(tok_emb, mask, pos.unsqueeze(1), past_key_values=cache, use_cache=True)
    else:
        embeds = torch.cat([embeds, tok_emb], dim=1)
        positions = torch.cat([positions, pos.unsqueeze(1)], dim=1)
        logits, _ = decoder(embeds, mask, positions)
    return torch.log_softmax(logits[:, -1].float(), dim=-1), mask, cache, embeds, positions


@torch.no_grad()
def greedy_search(
    decoder: AbsDecoder,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    eos_id: int,
    max_new_tokens: int = 128,
    use_cache: bool = True,
) -> List[Hyp]:
    """Greedy decoding of a left-padded batch; ``use_cache=False`` reruns the full sequence each step."""
    logits, cache = decoder(embeds, mask, positions, use_cache=use_cache)
    logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
    batch = embeds.size(0)
    pos = positions[:, -1] + 1
    tokens: List[List[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    done = [False] * batch
    for step in range(max_new_tokens):
        best = logp.argmax(-1)
        best_logp = logp.gather(1, best.unsqueeze(1)).squeeze(1)
        for i in range(batch):
            if done[i]:
                continue
            scores[i] += float(best_logp[i])
            if int(best[i]) == eos_id:
                done[i] = True
            else:
                tokens[i].append(int(best[i]))
        if all(done) or step == max_new_tokens - 1:
            break
        best = torch.where(torch.tensor(done, device=best.device), torch.full_like(best, eos_id), best)
        logp, mask, cache, embeds, positions = _step(decoder, best, mask, pos, cache, embeds, positions, use_cache)
        pos = pos + 1
    return list(zip(tokens, scores))


@torch.no_grad()
def beam_search(
    decoder: AbsDecoder,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    eos_id: int,
    beam_size: int = 4,
    max_new_tokens: int = 128,
    length_penalty: float = 0.0,
) -> List[Hyp]:
    """Beam search with the KV cache, all utterances of the batch at once.

    Hypotheses are ranked by ``logp / len**length_penalty``; an utterance stops
    once ``beam_size`` hypotheses have ended and no live beam scores above them.
    """
    batch, k = embeds.size(0), beam_size
    logits, cache = decoder(embeds, mask, positions, use_cache=True)
    logp = torch.log_softmax(logits[:, -1].float(), dim=-1).repeat_interleave(k, 0)
    cache.batch_repeat_interleave(k)
    mask = mask.repeat_interleave(k, 0)
    pos = (positions[:, -1] + 1).repeat_interleave(k, 0)
    vocab = logp.size(-1)
    beam_scores = torch.full((batch, k), float("-inf"), device=logp.device)
    beam_scores[:, 0] = 0.0
    seqs: List[List[int]] = [[] for _ in range(batch * k)]
    ended: List[List[Hyp]] = [[] for _ in range(batch)]

    def norm(score: float, length: int) -> float:
        return score / max(length, 1) ** length_penalty

    finished = [False] * batch
    for step in range(max_new_tokens):
        cand = (beam_scores.view(-1, 1) + logp).view(batch, k * vocab)
        top_scores, top_idx = cand.topk(2 * k, dim=1)
        src = torch.arange(batch * k, device=logp.device)
        next_tok = torch.full((batch * k,), eos_id, device=logp.device, dtype=torch.long)
        new_scores = torch.full((batch, k), float("-inf"), device=logp.device)
        new_seqs = [list(s) for s in seqs]
        for b in range(batch):
            if finished[b]:
                continue
            slot = 0
            for s, idx in zip(top_scores[b].tolist(), top_idx[b].tolist()):
                if s == float("-inf") or slot == k:
                    break
                beam, tok = divmod(idx, vocab)
                prev = seqs[b * k + beam]
                if tok == eos_id or step == max_new_tokens - 1:
                    ended[b].append((prev if tok == eos_id else prev + [tok], s))
                    continue
                src[b * k + slot] = b * k + beam
                next_tok[b * k + slot] = tok
                new_scores[b, slot] = s
                new_seqs[b * k + slot] = prev + [tok]
                slot += 1
            # log-probabilities only fall: stop once no live beam can beat the k-th ended one
            ended[b] = sorted(ended[b], key=lambda h: -norm(h[1], len(h[0]) + 1))[:k]
            best_alive = float(new_scores[b].max())
            finished[b] = len(ended[b]) >= k and best_alive < norm(ended[b][-1][1], len(ended[b][-1][0]) + 1)
        if all(finished) or step == max_new_tokens - 1:
            break
        cache.reorder_cache(src)
        seqs, beam_scores = new_seqs, new_scores
        logp, mask, cache, _, _ = _step(decoder, next_tok, mask, pos, cache, embeds, positions, True)
        pos = pos + 1
    results = []
    for b in range(batch):
        pool = ended[b] or [(seqs[b * k + j], float(beam_scores[b, j])) for j in range(k)]
        results.append(max(pool, key=lambda h: norm(h[1], len(h[0]) + 1)))
    return results


@torch.no_grad()
def score_labels(
    decoder: AbsDecoder,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    label_ids: Sequence[Sequence[int]],
    eos_id: int,
) -> torch.Tensor:
    """``log p(label + EOS | prefix)`` for every label: a ``(B, n_labels)`` tensor.

    The prefix runs once; its KV cache is repeated for the labels, which are then
    scored in one right-padded forward pass.
    """
    batch, n = embeds.size(0), len(label_ids)
    logits, cache = decoder(embeds, mask, positions, use_cache=True)
    first = torch.log_softmax(logits[:, -1].float(), dim=-1).repeat_interleave(n, 0)  # (B*n, V)
    cache.batch_repeat_interleave(n)
    width = max(len(lab) for lab in label_ids)
    device = embeds.device
    toks = torch.full((n, width), eos_id, dtype=torch.long, device=device)
    tok_mask = torch.zeros(n, width, dtype=torch.bool, device=device)
    for j, lab in enumerate(label_ids):
        toks[j, : len(lab)] = torch.tensor(lab, device=device)
        tok_mask[j, : len(lab)] = True
    toks, tok_mask = toks.repeat(batch, 1), tok_mask.repeat(batch, 1)
    full_mask = torch.cat([mask.repeat_interleave(n, 0), tok_mask], dim=1)
    pos = (positions[:, -1:] + 1).repeat_interleave(n, 0) + torch.arange(width, device=device)
    out, _ = decoder(decoder.embed(toks).to(embeds.dtype), full_mask, pos, past_key_values=cache, use_cache=True)
    logp = torch.log_softmax(out.float(), dim=-1)  # predicts token t+1 from token t
    lengths = tok_mask.sum(1)
    # targets: label tokens 2..n then EOS, predicted from positions 0..n-1
    targets = torch.cat([toks[:, 1:], toks.new_full((toks.size(0), 1), eos_id)], dim=1)
    targets = torch.where(torch.arange(width, device=device) == (lengths - 1).unsqueeze(1), eos_id, targets)
    cont = logp.gather(2, targets.unsqueeze(2)).squeeze(2) * tok_mask
    total = first.gather(1, toks[:, :1]).squeeze(1) + cont.sum(1)
    return total.view(batch, n)
