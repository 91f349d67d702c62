"""The HarmoniFuse model: gated, prompt-adaptively fused speech features read by an LLM."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
from espnet_harmonifuse.backbone.state_cache import BackboneStateCache, is_frozen
from espnet_harmonifuse.decoder.abs_decoder import AbsDecoder
from espnet_harmonifuse.decoder.inputs import pack
from espnet_harmonifuse.decoding import score_labels
from espnet_harmonifuse.fusion.abs_fusion import AbsFusion
from espnet_harmonifuse.gate.abs_gate import AbsGate
from espnet_harmonifuse.projector.abs_projector import AbsProjector
from espnet_harmonifuse.task_spec import TaskSpec
from espnet_harmonifuse.task_stats import task_accuracy
from espnet_harmonifuse.utils.ctc import ctc_per_utterance
from espnet_harmonifuse.utils.device import warn_if_bf16_emulated
from espnet_harmonifuse.utils.distributed import hf_backbone_reasons, trainable
from espnet_harmonifuse.utils.masking import lengths_to_mask

IGNORE_ID = -1


class HarmoniFuseModel(AbsESPnetModel):
    """Multi-task speech LM: ``[prompt ; speech ; target]`` into a causal LM.

    The LLM reads ``[before ; speech ; after ; target]``, with ``(before, after)`` the prompt frame
    of the sample's paraphrase (:meth:`set_prompt_frames`; by default the prompt text and nothing),
    and is trained to predict the target and then EOS. Training and decoding build the prefix
    ``[before ; speech ; after]`` with the same code (:meth:`prefix_parts`).

    Args:
        backbone, fusion, gate, projector, decoder: the components.
        tasks: the declared tasks; a batch's ``task_id`` indexes this list.
        prompt_ids: for each task, the token ids of each prompt paraphrase's text (the pooled prompt
            vector is the mean of their LLM input embeddings).
        label_ids: for each task, the token ids of each label (empty for text tasks).
        eos_id: end-of-sequence token appended to every target.
        prompt_sampling: ``random`` (a paraphrase per sample in training) or ``first``.
        ctc_weight: weight of an auxiliary CTC loss on the gated states for the
            text tasks in ``ctc_tasks`` (0: off, the paper's setting; beyond the paper).
            1.0 trains with CTC alone and never runs the LM: the encoder pre-training
            of a from-scratch backbone (every task must then be a CTC task).
        ctc_tasks: the tasks whose batches get the CTC loss.
        center_prompts: subtract from each pooled prompt vector the mean over the declared
            tasks (each the mean of its paraphrases), so the fusion and the gate see only what
            tells the tasks apart (beyond the paper, whose pooling is not published). Without
            it the vectors of different tasks share most of their direction (cosine 0.70 in
            mini_emo) and a prompt MLP learns a shared offset: both tasks get the same weights.
            Off by default, so that models trained before the option keep their behaviour;
            the recipes' configs turn it on.
        cache_backbone_states: keep each training and validation utterance's backbone states in
            memory after the first time, so later epochs skip the backbone (a speed-up, beyond
            the paper; needs ``backbone_conf.freeze: true``). Decoding never uses it.
        backbone_cache_gb: the cache's memory bound; utterances beyond it are computed every time.
        lsm_weight: label smoothing of the LM's token loss, as ESPnet's ``lsm_weight`` (0: plain
            cross-entropy, the default; the paper states none). The reported ``loss`` stats are
            the smoothed loss in training and validation alike, as in ESPnet.
        share_prompt_prefix: run each distinct prompt of a batch through the LM once and give its KV
            cache to the samples that use it, instead of once per sample (the same function; the
            prompts are most of the LM's positions when they are long). Dropout inside a prompt is
            then shared by the samples with that prompt. Needs a decoder whose cache has
            ``reorder_cache`` (the Hugging Face ones).
        autocast_dtype: run the training forward (and validation) under ``torch.autocast`` in this
            dtype (``bfloat16``: matrix products and convolutions at twice the float32 rate on CPUs
            with AVX512-BF16 or AMX, and on GPUs; the weights, the optimizer and the losses stay
            float32). null: float32 throughout. Decoding is unaffected (it has its own ``dtype``).
    """

    def __init__(
        self,
        backbone: AbsBackbone,
        fusion: AbsFusion,
        gate: AbsGate,
        projector: AbsProjector,
        decoder: AbsDecoder,
        tasks: List[TaskSpec],
        prompt_ids: List[List[List[int]]],
        label_ids: List[List[List[int]]],
        eos_id: int,
        prompt_sampling: str = "random",
        ctc_weight: float = 0.0,
        ctc_tasks: Sequence[str] = ("asr",),
        center_prompts: bool = False,
        cache_backbone_states: bool = False,
        backbone_cache_gb: float = 4.0,
        lsm_weight: float = 0.0,
        share_prompt_prefix: bool = False,
        autocast_dtype: Optional[str] = None,
    ):
        super().__init__()
        if autocast_dtype not in (None, "bfloat16", "float16"):
            raise ValueError(f"model_conf.autocast_dtype must be null, bfloat16 or float16, got {autocast_dtype!r}")
        if not 0.0 <= lsm_weight < 1.0:
            raise ValueError(f"model_conf.lsm_weight must be in [0, 1), got {lsm_weight}")
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"model_conf.ctc_weight must be in [0, 1], got {ctc_weight}")
        if ctc_weight == 1.0:
            other = [t.name for t in tasks if t.name not in ctc_tasks or t.is_label]
            if other:
                raise ValueError(
                    f"model_conf.ctc_weight 1.0 (CTC only, no LM) leaves task(s) {other} with no loss: "
                    f"train them with ctc_weight < 1 or remove them from 'tasks' (ctc_tasks: {list(ctc_tasks)})"
                )
        if cache_backbone_states and not is_frozen(backbone):
            raise ValueError(
                "model_conf.cache_backbone_states: true needs a frozen backbone (backbone_conf.freeze: true); "
                "a backbone that trains gives other states every epoch. Set one of the two differently."
            )
        self.backbone = backbone
        self.state_cache = BackboneStateCache(backbone_cache_gb) if cache_backbone_states else None
        self.fusion = fusion
        self.gate = gate
        self.projector = projector
        self.decoder = decoder
        self.tasks = tasks
        self.prompt_ids = prompt_ids
        self.prompt_frames = [[(list(p), []) for p in options] for options in prompt_ids]
        self.label_ids = label_ids
        self.eos_id = eos_id
        self.prompt_sampling = prompt_sampling
        self.ctc_weight = ctc_weight
        self.center_prompts = center_prompts
        self.lsm_weight = lsm_weight
        self.share_prompt_prefix = share_prompt_prefix
        self.autocast_dtype = None if autocast_dtype is None else getattr(torch, autocast_dtype)
        self.ctc_task_ids = [i for i, t in enumerate(tasks) if t.name in ctc_tasks and not t.is_label]
        if ctc_weight > 0:  # the blank is an extra class after the LLM vocabulary
            self.ctc_head = torch.nn.Linear(backbone.output_size(), decoder.vocab_size + 1)

    def set_prompt_frames(self, frames: Sequence[Sequence[Tuple[List[int], List[int]]]]) -> None:
        """The LLM input tokens ``(before, after)`` the speech for each task's paraphrases, as
        ``tokenizer.build_prompt_frames`` gives them (BOS, chat template)."""
        if [len(f) for f in frames] != [len(p) for p in self.prompt_ids]:
            raise ValueError(
                f"prompt frames for {[len(f) for f in frames]} paraphrases per task, but the tasks have "
                f"{[len(p) for p in self.prompt_ids]}: build them from the same tasks"
            )
        self.prompt_frames = [[(list(b), list(a)) for b, a in options] for options in frames]

    # ------------------------------------------------------------------ speech side
    def choose_prompts(self, task_id: torch.Tensor, prompt_index: Optional[int] = None) -> List[Tuple[int, int]]:
        """One prompt paraphrase ``(task, index)`` per sample: random in training, the first (or given) otherwise."""
        chosen = []
        for t in task_id.tolist():
            n = len(self.prompt_ids[t])
            if prompt_index is not None:
                chosen.append((t, prompt_index % n))
            elif self.training and self.prompt_sampling == "random":
                chosen.append((t, int(torch.randint(n, (1,)))))
            else:
                chosen.append((t, 0))
        return chosen

    def embed_prompts(self, prompts: List[List[int]]) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """LLM input embeddings of each prompt and the pooled prompt vectors (their means),
        centred over the tasks when ``center_prompts`` is set."""
        distinct = {tuple(p): None for p in prompts}  # each distinct prompt looked up once
        for ids in distinct:
            distinct[ids] = self._embed_ids(list(ids))
        embs = [distinct[tuple(p)] for p in prompts]
        pooled = torch.stack([e.mean(0) for e in embs]).float()
        if self.center_prompts:
            pooled = pooled - self.prompt_center()
        return embs, pooled

    def prompt_center(self) -> torch.Tensor:
        """The mean over the declared tasks of each task's mean pooled paraphrase vector."""
        per_task = [
            torch.stack([self._embed_ids(p).mean(0) for p in options]).mean(0) for options in self.prompt_ids
        ]
        return torch.stack(per_task).mean(0).float()

    def _embed_ids(self, ids: List[int]) -> torch.Tensor:
        device = next(self.decoder.parameters()).device
        return self.decoder.embed(torch.tensor(ids, device=device))

    def prefix_parts(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        task_id: torch.Tensor,
        prompt_index: Optional[int] = None,
    ) -> Tuple[List[List[torch.Tensor]], Dict[str, torch.Tensor]]:
        """Per sample, the ``[before ; speech ; after]`` embeddings (``after`` left out when empty),
        plus layer weights and gate stats."""
        chosen, extra = self.select(speech, speech_lengths, task_id, prompt_index)
        selected, lengths = extra["selected"], extra["selected_lengths"]
        # A projector merges neighbouring frames (stacking, convolution), so the frames past an
        # utterance's end must be zeros, as when it is decoded alone, and not whatever the backbone
        # and the gate left in the padding (the state cache pads with zeros: training saw zeros).
        selected = selected * lengths_to_mask(lengths, selected.size(1)).unsqueeze(-1).to(selected.dtype)
        embeds, emb_lengths = self.projector(selected, lengths)
        frames = {}  # each distinct prompt's (before, after) embeddings, looked up once
        for t, j in chosen:
            if (t, j) not in frames:
                before, after = self.prompt_frames[t][j]
                frames[t, j] = (self._embed_ids(before), self._embed_ids(after) if after else None)
        parts = []
        for i, (t, j) in enumerate(chosen):
            before, after = frames[t, j]
            sample = [before, embeds[i, : int(emb_lengths[i])].to(before.dtype)]
            if after is not None:
                sample.append(after)
            parts.append(sample)
        return parts, extra

    def select(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        task_id: torch.Tensor,
        prompt_index: Optional[int] = None,
    ) -> Tuple[List[Tuple[int, int]], Dict[str, torch.Tensor]]:
        """Backbone, fusion and gate: each sample's paraphrase ``(task, index)`` and the gated states
        with their stats."""
        chosen = self.choose_prompts(task_id, prompt_index)
        _, prompt_vec = self.embed_prompts([self.prompt_ids[t][j] for t, j in chosen])
        if self.state_cache is not None:
            states, lengths = self.state_cache(self.backbone, speech, speech_lengths)
        else:
            states, lengths = self.backbone(speech, speech_lengths)
        fused, layer_weights = self.fusion(states, lengths, prompt_vec)
        selected, gate_stats = self.gate(fused, lengths, prompt_vec)
        return chosen, dict(layer_weights=layer_weights, selected=selected, selected_lengths=lengths, prompts=chosen, **gate_stats)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        task_id: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, Optional[torch.Tensor]], torch.Tensor]:
        task_id = task_id.view(-1).long()
        if self.autocast_dtype is not None and not torch.is_autocast_enabled(speech.device.type):
            warn_if_bf16_emulated(speech.device.type, self.autocast_dtype)
            with torch.autocast(speech.device.type, dtype=self.autocast_dtype):
                return self.forward(speech, speech_lengths, text, text_lengths, task_id, **kwargs)
        if self.ctc_weight == 1.0:
            return self._ctc_only(speech, speech_lengths, text, text_lengths, task_id)
        parts, extra = self.prefix_parts(speech, speech_lengths, task_id)
        prefixes = [list(p) for p in parts]
        targets = [text[i, : int(text_lengths[i])] for i in range(text.size(0))]
        shared = self.share_prompt_prefix and all(p[0].size(0) > 0 for p in parts)
        first = 1 if shared else 0  # with a shared prompt prefix, the LM runs the prompts apart
        eos = torch.tensor([self.eos_id], device=text.device, dtype=text.dtype)
        labels_per_sample = []
        target_embeds = self.decoder.embed(text.clamp(min=0))  # one lookup; padding rows unused
        for i, y in enumerate(targets):
            parts[i].append(target_embeds[i, : y.size(0)])
            prefix_len = sum(p.size(0) for p in parts[i][first:-1])
            ignore = torch.full((prefix_len - 1,), IGNORE_ID, device=text.device, dtype=text.dtype)
            labels_per_sample.append(torch.cat([ignore, y, eos]))
        labels = torch.nn.utils.rnn.pad_sequence(labels_per_sample, batch_first=True, padding_value=IGNORE_ID)
        if shared:
            logits = self._logits_after_shared_prompts(parts, extra["prompts"])
        else:
            inputs, mask, positions = pack(parts, left_pad=False)
            logits, _ = self.decoder(inputs, mask, positions)
        hits = None if self.training else self.label_hits(prefixes, task_id, targets)
        loss, stats, weight = self._loss_and_stats(logits, labels, task_id, hits)
        if self.ctc_weight > 0:
            loss, stats = self._add_ctc(loss, stats, extra, text, text_lengths, task_id)
        return loss, stats, weight

    def _logits_after_shared_prompts(self, parts: List[List[torch.Tensor]], prompts: List[Tuple[int, int]]) -> torch.Tensor:
        """The LM's logits over each sample's parts after the prompt (``parts[i][1:]``), with each
        distinct prompt in the batch run through the LM once and its KV cache given to every sample
        that uses it. The same function of the weights as running ``[prompt ; rest]`` per sample: the
        prompt comes first and attends to itself only (only dropout inside the prompt is then shared
        by the samples with that prompt)."""
        distinct = sorted(set(prompts))
        index = torch.tensor([distinct.index(p) for p in prompts], device=parts[0][0].device)
        heads = [[parts[prompts.index(p)][0]] for p in distinct]  # the prompts' embeddings, as looked up
        head_embeds, head_mask, head_positions = pack(heads, left_pad=True)
        _, cache = self.decoder(head_embeds, head_mask, head_positions, use_cache=True)
        cache.reorder_cache(index)  # one row per sample
        inputs, mask, positions = pack([p[1:] for p in parts], left_pad=False)
        offset = torch.tensor([p[0].size(0) for p in parts], device=positions.device)
        mask = torch.cat([head_mask[index], mask], dim=1)
        logits, _ = self.decoder(inputs, mask, positions + offset.unsqueeze(1), past_key_values=cache, use_cache=True)
        return logits

    def _ctc_only(self, speech, speech_lengths, text, text_lengths, task_id):
        """``ctc_weight: 1.0``: CTC on the gated states; the projector and the LM never run."""
        _, extra = self.select(speech, speech_lengths, task_id)
        zero = extra["selected"].new_zeros(())
        loss, stats = self._add_ctc(zero, {"loss": zero}, extra, text, text_lengths, task_id)
        return force_gatherable((loss, stats, task_id.size(0)), loss.device)

    def _add_ctc(self, loss, stats, extra, text, text_lengths, task_id):
        """Mix in CTC on the gated states for the samples of the CTC tasks."""
        sel = torch.isin(task_id, torch.tensor(self.ctc_task_ids, device=task_id.device))
        stats["loss_ctc"] = torch.tensor(float("nan"), device=loss.device)
        if not sel.any():
            return loss, stats
        ctc = ctc_per_utterance(self.ctc_head(extra["selected"][sel]), extra["selected_lengths"][sel], text[sel],
                                text_lengths[sel])
        stats["loss_ctc"] = ctc.detach().unsqueeze(0)
        loss = (1 - self.ctc_weight) * loss + self.ctc_weight * ctc
        stats["loss"] = loss.detach()
        return loss, stats

    @torch.no_grad()
    def label_hits(
        self, prefixes: List[List[torch.Tensor]], task_id: torch.Tensor, targets: List[torch.Tensor]
    ) -> torch.Tensor:
        """Per sample of a label task, whether its label is the most likely of the task's labels
        given its prefix, as SER decoding picks it (``score_labels``); False for the other samples."""
        hits = torch.zeros(len(prefixes), dtype=torch.bool, device=task_id.device)
        for t, spec in enumerate(self.tasks):
            rows = [i for i, k in enumerate(task_id.tolist()) if k == t]
            if not spec.is_label or not rows:
                continue
            packed = pack([prefixes[i] for i in rows], left_pad=True)
            best = score_labels(self.decoder, *packed, self.label_ids[t], self.eos_id).argmax(-1).tolist()
            for i, b in zip(rows, best):
                hits[i] = targets[i].tolist() == self.label_ids[t][b]
        return hits

    def _loss_and_stats(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        task_id: torch.Tensor,
        label_hits: Optional[torch.Tensor] = None,
    ):
        """The loss and its stats: ``acc`` (ESPnet's: every target token and EOS, all tasks) and per
        task ``loss_<task>`` and ``acc_<task>`` (task_stats.py: EOS left out; a label task
        counts whole labels, by ``label_hits`` where given), NaN for a task without samples."""
        logits = logits[:, : labels.size(1)]
        valid = labels != IGNORE_ID
        token_loss = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), labels.clamp(min=0), reduction="none", label_smoothing=self.lsm_weight
        ) * valid
        correct = (logits.argmax(-1) == labels) & valid
        content = valid & (valid.long().cumsum(1) < valid.sum(1, keepdim=True))  # the EOS is the last target
        n_tok = valid.sum(1).float()
        weights = torch.tensor([self.tasks[t].loss_weight for t in task_id.tolist()], device=logits.device)
        loss = (token_loss.sum(1) * weights).sum() / n_tok.sum().clamp(min=1.0)
        stats = {"loss": loss.detach(), "acc": correct.sum() / n_tok.sum().clamp(min=1.0)}
        nan = torch.tensor(float("nan"), device=logits.device)
        for t, spec in enumerate(self.tasks):
            sel = task_id == t
            if sel.any():
                n = n_tok[sel].sum().clamp(min=1.0)
                stats[f"loss_{spec.name}"] = token_loss[sel].sum().detach() / n
                hits = None if label_hits is None else label_hits[sel]
                stats[f"acc_{spec.name}"] = task_accuracy(spec.is_label, correct[sel], content[sel], hits)
            else:
                stats[f"loss_{spec.name}"] = nan
                stats[f"acc_{spec.name}"] = nan
        loss, stats, weight = force_gatherable((loss, stats, task_id.size(0)), loss.device)
        return loss, stats, weight

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        return {"feats": speech, "feats_lengths": speech_lengths}

    # ------------------------------------------------------------------ distributed training
    def unused_parameter_reasons(self) -> List[str]:
        """Why some trainable parameters get no gradient in some training batches (empty: every
        trainable parameter gets one in every batch). Under DDP each such model needs
        ``find_unused_parameters`` (ESPnet's ``--unused_parameters true``), which the task sets."""
        reasons = []
        if self.ctc_weight == 1.0:
            idle = [name for name in ("projector", "decoder") if trainable(getattr(self, name))]
            if idle:
                reasons.append(f"model_conf.ctc_weight 1.0 (CTC only) never runs the trainable {' and '.join(idle)}")
        elif self.ctc_weight > 0 and len(self.ctc_task_ids) < len(self.tasks) and trainable(self.ctc_head):
            other = [t.name for i, t in enumerate(self.tasks) if i not in self.ctc_task_ids]
            reasons.append(f"the CTC head (model_conf.ctc_weight) gets no gradient in batches of task(s) {other}")
        layer = getattr(self.fusion, "layer", None)  # a fusion that reads one layer (last_layer)
        if layer is not None and layer < self.backbone.num_layers - 1 and trainable(self.backbone):
            reasons.append(f"fusion_conf.layer {layer} leaves the trainable backbone's layers above it unused")
        reasons += hf_backbone_reasons(self.backbone)
        return reasons

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def layer_weights_per_task(self) -> Dict[str, torch.Tensor]:
        """For each task, the fusion's layer weights ``(n_prompts, L+1)`` for each paraphrase."""
        out = {}
        for spec, prompts in zip(self.tasks, self.prompt_ids):
            _, vec = self.embed_prompts(prompts)
            out[spec.name] = self.fusion.layer_weights(vec).cpu()
        return out
