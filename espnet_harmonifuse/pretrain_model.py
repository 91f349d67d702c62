"""Encoder pre-training by masked prediction of clustered acoustic features (HuBERT-style), plus CTC.

``model: encoder_pretrain`` in a training config. A stand-in for a self-supervised encoder such as
WavLM, for recipes that cannot download one: the paper's premise is an encoder whose lower layers
keep speaker and paralinguistic information while the upper ones turn phonetic, which an encoder
trained with CTC alone lacks (every layer is shaped for the transcript).

- **Targets.** The backbone's input features (normalised filterbank, with pitch where the backbone
  computes it) averaged over each output frame's stride (``subsampling`` input frames), assigned to
  the nearest of ``num_clusters`` k-means centroids. The centroids are fitted once, before the first
  step, on ``cluster_frames`` such frames of the first training batches (every task's audio; no
  label is read), and saved with the model, so a resumed run keeps them.
- **Masking.** Spans of ``mask_span`` output frames start at a frame with probability
  ``mask_prob / mask_span`` (about ``mask_prob`` of the frames masked); their input frames are
  replaced by a learned feature vector. The loss is the cross-entropy of the masked frames' cluster
  ids, predicted by a linear head on the top block (``ssl_weight``).
- **CTC** (``ctc_weight`` > 0): a linear CTC head on the top block, for the samples of the text tasks
  named in ``ctc_tasks``, computed on the unmasked input of the same step (a second encoder pass;
  the masked pass would hide the words it must transcribe). The label tasks' labels are never read.

The recipe copies the pre-trained ``backbone`` into HarmoniFuse (``--init_param
...:backbone:backbone``), as it does with the CTC-only pre-training.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
from espnet_harmonifuse.task_spec import TaskSpec
from espnet_harmonifuse.utils.ctc import ctc_per_utterance
from espnet_harmonifuse.utils.device import warn_if_bf16_emulated
from espnet_harmonifuse.utils.masking import lengths_to_mask


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """``(k, F)`` centroids of the rows of ``x`` (k-means++ initialisation, then Lloyd steps)."""
    if x.size(0) < k:
        raise ValueError(f"k-means needs at least {k} frames, got {x.size(0)}: lower num_clusters")
    g = torch.Generator().manual_seed(seed)
    x = x.double()
    centroids = x[torch.randint(x.size(0), (1,), generator=g)]
    for _ in range(1, k):
        d = torch.cdist(x, centroids).min(1).values.square()
        centroids = torch.cat([centroids, x[torch.multinomial(d / d.sum(), 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids.float()


def span_mask(lengths: torch.Tensor, total: int, prob: float, span: int, generator=None) -> torch.Tensor:
    """``(B, total)`` bool: spans of ``span`` frames starting with probability ``prob / span`` at each
    valid frame, cut at each utterance's end."""
    valid = lengths_to_mask(lengths.cpu(), total)
    starts = (torch.rand(lengths.size(0), total, generator=generator) < prob / span) & valid
    mask = torch.zeros_like(starts)
    for offset in range(span):
        mask[:, offset:] |= starts[:, : total - offset]
    return mask & valid


class EncoderPretrainModel(AbsESPnetModel):
    """See the module docstring. ``forward`` takes the task batches HarmoniFuse takes."""

    def __init__(
        self,
        backbone: AbsBackbone,
        vocab_size: int,
        tasks: List[TaskSpec],
        ssl_weight: float = 1.0,
        ctc_weight: float = 0.0,
        ctc_tasks: Sequence[str] = ("asr",),
        num_clusters: int = 64,
        cluster_frames: int = 50000,
        mask_prob: float = 0.4,
        mask_span: int = 3,
        autocast_dtype: Optional[str] = None,
    ):
        super().__init__()
        if not (hasattr(backbone, "features") and hasattr(backbone, "encode")):
            raise ValueError(f"model: encoder_pretrain needs a backbone with features() and encode() (conformer); "
                             f"{type(backbone).__name__} has not: pre-train it with its own recipe")
        if ssl_weight < 0 or ctc_weight < 0 or ssl_weight + ctc_weight == 0:
            raise ValueError(f"model_conf: ssl_weight and ctc_weight must be >= 0 and not both 0 "
                             f"(got {ssl_weight}, {ctc_weight})")
        if not 0 < mask_prob < 1 or mask_span < 1:
            raise ValueError(f"model_conf: mask_prob must be in (0, 1) and mask_span >= 1 (got {mask_prob}, {mask_span})")
        if autocast_dtype not in (None, "bfloat16", "float16"):
            raise ValueError(f"model_conf.autocast_dtype must be null, bfloat16 or float16, got {autocast_dtype!r}")
        self.backbone = backbone
        self.tasks = tasks
        self.ssl_weight, self.ctc_weight = ssl_weight, ctc_weight
        self.ctc_task_ids = [i for i, t in enumerate(tasks) if t.name in ctc_tasks and not t.is_label]
        if ctc_weight > 0 and not self.ctc_task_ids:
            raise ValueError(f"model_conf.ctc_weight > 0 but no text task among ctc_tasks {list(ctc_tasks)}")
        self.num_clusters, self.cluster_frames = num_clusters, cluster_frames
        self.mask_prob, self.mask_span = mask_prob, mask_span
        self.autocast_dtype = None if autocast_dtype is None else getattr(torch, autocast_dtype)
        dim = backbone.output_size()
        # fitted before the first step (a float flag: ESPnet averages checkpoints, 1.0 stays 1.0)
        self.register_buffer("centroids", torch.zeros(num_clusters, backbone.feature_size))
        self.register_buffer("clusters_fitted", torch.zeros(()))
        # the learned stand-in for masked input frames, in the features' space
        self.mask_embedding = torch.nn.Parameter(torch.zeros(backbone.feature_size))
        self.ssl_head = torch.nn.Linear(dim, num_clusters)
        self.ctc_head = torch.nn.Linear(dim, vocab_size + 1) if ctc_weight > 0 else None  # blank: the last class

    # ------------------------------------------------------------------ targets
    @property
    def _pool_offset(self) -> int:
        """The first input frame of the pooled windows: each window is centred on its output frame's
        receptive field."""
        return max(self.backbone.subsampling // 2 - 1, 0)

    def pooled_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T // s, F)``: the features averaged over each output frame's stride ``s``."""
        s, offset = self.backbone.subsampling, self._pool_offset
        usable = (feats.size(1) - offset) // s
        x = feats[:, offset : offset + usable * s]
        return x.reshape(x.size(0), usable, s, x.size(2)).mean(2)

    def pooled_lengths(self, feat_lengths: torch.Tensor) -> torch.Tensor:
        """The pooled frames of each utterance whose window lies inside its valid features."""
        return torch.div((feat_lengths - self._pool_offset).clamp(min=0), self.backbone.subsampling,
                         rounding_mode="floor")

    @property
    def fitted(self) -> bool:
        return bool(self.clusters_fitted > 0.5)

    @torch.no_grad()
    def fit_clusters(self, batches, seed: int = 0) -> None:
        """Fit the centroids on the frames of ``batches`` (dicts with ``speech``, ``speech_lengths``)."""
        frames: List[torch.Tensor] = []
        count = 0
        was_training = self.backbone.training
        self.backbone.eval()  # no SpecAugment in the targets
        try:
            for batch in batches:
                feats, lengths = self.backbone.features(batch["speech"], batch["speech_lengths"])
                pooled = self.pooled_features(feats.float())
                valid = lengths_to_mask(self.pooled_lengths(lengths), pooled.size(1))
                frames.append(pooled[valid].cpu())
                count += frames[-1].size(0)
                if count >= self.cluster_frames:
                    break
        finally:
            self.backbone.train(was_training)
        x = torch.cat(frames)[: self.cluster_frames]
        self.set_centroids(kmeans(x, self.num_clusters, seed=seed))

    @torch.no_grad()
    def set_centroids(self, centroids: torch.Tensor) -> None:
        if centroids.shape != self.centroids.shape:
            raise ValueError(f"centroids of shape {tuple(centroids.shape)}, expected {tuple(self.centroids.shape)}")
        self.centroids.copy_(centroids)
        self.mask_embedding.copy_(centroids.mean(0))  # masked frames start at the features' mean
        self.clusters_fitted.fill_(1.0)

    def targets(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T // s)`` cluster ids of the pooled features."""
        pooled = self.pooled_features(feats.float())
        return torch.cdist(pooled, self.centroids.unsqueeze(0).expand(pooled.size(0), -1, -1)).argmin(-1)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
        task_id: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, Optional[torch.Tensor]], torch.Tensor]:
        if not self.fitted:
            raise RuntimeError("encoder_pretrain: the cluster centroids are not fitted; the trainer fits them "
                               "before the first step (fit_clusters), or load a model that has them")
        if self.autocast_dtype is not None and not torch.is_autocast_enabled(speech.device.type):
            warn_if_bf16_emulated(speech.device.type, self.autocast_dtype)
            with torch.autocast(speech.device.type, dtype=self.autocast_dtype):
                return self.forward(speech, speech_lengths, text, text_lengths, task_id, **kwargs)
        batch = speech.size(0)
        task_id = torch.zeros(batch, dtype=torch.long, device=speech.device) if task_id is None else task_id.view(-1).long()
        feats, feat_lengths = self.backbone.features(speech, speech_lengths)
        stats: Dict[str, Optional[torch.Tensor]] = {}
        loss = feats.new_zeros((), dtype=torch.float32)
        if self.ssl_weight > 0:
            ssl, acc = self._masked_prediction(feats, feat_lengths)
            loss = loss + self.ssl_weight * ssl
            stats.update(loss_ssl=ssl.detach(), acc_ssl=acc)
        sel = torch.isin(task_id, torch.tensor(self.ctc_task_ids, device=task_id.device))
        if self.ctc_head is not None:
            stats["loss_ctc"] = torch.tensor(float("nan"), device=speech.device)
            if sel.any() and text is not None:
                ctc = self._ctc(feats[sel], feat_lengths[sel], text[sel], text_lengths[sel])
                loss = loss + self.ctc_weight * ctc
                stats["loss_ctc"] = ctc.detach()
        stats["loss"] = loss.detach()
        return force_gatherable((loss, stats, batch), loss.device)

    def _masked_prediction(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        s = self.backbone.subsampling
        with torch.no_grad():
            target = self.targets(feats)  # (B, T // s)
        out_lengths = self.pooled_lengths(feat_lengths).clamp(max=target.size(1))
        mask = span_mask(out_lengths, target.size(1), self.mask_prob, self.mask_span).to(feats.device)
        offset = self._pool_offset
        frame_mask = torch.zeros(feats.shape[:2], dtype=torch.bool, device=feats.device)
        frame_mask[:, offset : offset + target.size(1) * s] = mask.repeat_interleave(s, dim=1)
        masked = torch.where(frame_mask.unsqueeze(-1), self.mask_embedding.to(feats.dtype), feats)
        states, lengths = self.backbone.encode(masked, feat_lengths)
        top = states[-1]
        n = min(top.size(1), target.size(1))
        picked = mask[:, :n] & lengths_to_mask(lengths, n)
        logits = self.ssl_head(top[:, :n][picked]).float()
        if logits.numel() == 0:  # nothing masked (a very short batch)
            zero = top.sum() * 0.0
            return zero, torch.tensor(float("nan"), device=feats.device)
        y = target[:, :n][picked]
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss, (logits.argmax(-1) == y).float().mean().detach()

    def _ctc(self, feats, feat_lengths, text, text_lengths) -> torch.Tensor:
        states, lengths = self.backbone.encode(feats, feat_lengths)
        return ctc_per_utterance(self.ctc_head(states[-1]), lengths, text, text_lengths)

    def unused_parameter_reasons(self) -> List[str]:
        """Why some trainable parameters get no gradient in some batches (DDP's find_unused_parameters)."""
        reasons = []
        if self.ctc_head is not None and len(self.ctc_task_ids) < len(self.tasks):
            other = [t.name for i, t in enumerate(self.tasks) if i not in self.ctc_task_ids]
            reasons.append(f"the CTC head gets no gradient in batches of task(s) {other}")
        if self.ssl_weight == 0:
            reasons.append("model_conf.ssl_weight 0 never runs the masked-prediction head and mask vector")
        return reasons

    def collect_feats(self, speech, speech_lengths, **kwargs) -> Dict[str, torch.Tensor]:
        return {"feats": speech, "feats_lengths": speech_lengths}
