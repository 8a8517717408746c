"""Instance discrimination with a momentum encoder and a queue of negatives (MoCo v2).

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (CVPR 2020);
Chen et al., "Improved Baselines with Momentum Contrastive Learning" (2020): two augmented views
of each face; the online encoder's projection of one view must pick out the momentum encoder's
projection of the other among `queue_size` projections of earlier faces. The queue makes the
number of negatives independent of the batch, which two CPU cores keep small. The loss is
symmetrised (each view is the query once). The queue is filled with keys gathered from every
process, in global order, so torchrun runs equal one process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facerep.objectives.base import Objective, PretrainBatch
from facerep.objectives.momentum import ema_update, momentum_copy, projection_head


class InstanceDiscrimination(Objective):
    """MoCo v2 on any model with `embed(imgs) -> [N, D]` and `embed_dim`.

    Args:
        model: the encoder being trained (its `embed` is the embedding that ships).
        queue_size: negatives kept; a multiple of nothing in particular, filled in a ring.
        temperature: softmax temperature (MoCo v2: 0.2).
        momentum: EMA rate of the momentum encoder (MoCo: 0.999 for long runs; 0.99 suits the
            few thousand steps of a CPU budget, so the keys follow the encoder).
        projection_dim: size of the projected vectors compared in the loss.
    """

    num_views = 2

    def __init__(
        self,
        model: nn.Module,
        queue_size: int = 4096,
        temperature: float = 0.2,
        momentum: float = 0.99,
        projection_dim: int = 128,
    ):
        if not hasattr(model, "embed") or not hasattr(model, "embed_dim"):
            raise ValueError("objective instance needs a model with embed() and embed_dim")
        super().__init__(model)
        self.temperature, self.momentum = temperature, momentum
        self.head = projection_head(model.embed_dim, projection_dim)
        self.momentum_model = momentum_copy(model)
        self.momentum_head = momentum_copy(self.head)
        # Seeded by the run's seed (the trainer seeds torch before building): the same queue
        # on every process.
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_next", torch.zeros((), dtype=torch.long))

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """The symmetric contrastive loss of this process's rows, and the embeddings' spread."""
        first, second = (view.imgs for view in batch.views)
        queries = [self._project(first), self._project(second)]
        with torch.no_grad():
            self.momentum_model.train(self.model.training)
            keys = [self._project_momentum(second), self._project_momentum(first)]
        # A copy: the queue is overwritten below, before backward needs these negatives.
        negatives = self.queue.clone()
        loss = 0.5 * sum(
            self._info_nce(query, key, negatives) for query, key in zip(queries, keys, strict=True)
        )
        self._enqueue(batch.gather(torch.cat(keys)))
        spread = queries[0].detach().float().std(dim=0).mean()
        positive = (queries[0].detach() * keys[0]).sum(dim=1).mean()
        return {"loss": loss, "embedding_spread": spread, "positive_similarity": positive}

    def _project(self, imgs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.model.embed(imgs)), dim=1)

    def _project_momentum(self, imgs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.momentum_head(self.momentum_model.embed(imgs)), dim=1)

    def _info_nce(
        self, query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of picking `key` (`[B, P]`) for `query` among it and `negatives`."""
        positive = (query * key).sum(dim=1, keepdim=True)
        negative = query @ negatives.T.to(query.dtype)
        logits = torch.cat([positive, negative], dim=1).float() / self.temperature
        target = torch.zeros(len(query), dtype=torch.long, device=query.device)  # the key: 0
        return F.cross_entropy(logits, target)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write the newest keys over the oldest, in a ring."""
        size = len(self.queue)
        rows = (self.queue_next + torch.arange(len(keys), device=keys.device)) % size
        self.queue[rows[-size:]] = keys[-size:].to(self.queue.dtype)
        self.queue_next.copy_((self.queue_next + len(keys)) % size)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Move the momentum encoder and head a step towards the online ones."""
        ema_update(self.model, self.momentum_model, self.momentum)
        ema_update(self.head, self.momentum_head, self.momentum)
