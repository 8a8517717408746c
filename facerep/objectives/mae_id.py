"""Masked reconstruction with an identity branch (FSFM's MAE + siamese instance discrimination).

Wang et al., "FSFM: A Generalizable Face Security Foundation Model via Self-Supervised Facial
Representation Learning" (CVPR 2025): the MAE reconstructs the hidden patches of one view (with
face-region masking, CRFR-P), and the same encoder's representation of that masked view must
match a momentum target's representation of a second, unmasked view of the face. FSFM's branch
is SimSiam-style; here the target is matched by instance discrimination against the queue
(`instance`'s MoCo v2 machinery): without batch norm in the heads, which would make torchrun
runs differ from one process, a BYOL-style branch collapsed on small batches (spread ~0.02)
and taught nothing, while the queue's negatives keep the embeddings apart.
Reconstruction teaches what faces look like; the branch asks that two views of one face, one
with an eye or the mouth hidden, say the same thing about who it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facerep.models.strategies import MaskingStrategy
from facerep.objectives.base import PretrainBatch
from facerep.objectives.instance import InstanceDiscrimination
from facerep.objectives.reconstruction import MaskedViews, check_masking


class ReconstructionWithIdentity(MaskedViews, InstanceDiscrimination):
    """MAE's loss on the masked first view plus `identity_weight` x InfoNCE to the second view.

    Args:
        model: an autoencoder with `forward_pooled` (the ViT MAE, the conv-AE).
        masking, mask_ratio: as for `reconstruction` (FSFM masks by face regions).
        identity_weight: weight of the identity term beside the reconstruction.
        queue_size, temperature, momentum, projection_dim: as for `instance`.
    """

    num_views = 2

    def __init__(
        self,
        model: nn.Module,
        masking: MaskingStrategy = "face-regions",
        mask_ratio: float = 0.75,
        identity_weight: float = 0.1,
        queue_size: int = 4096,
        temperature: float = 0.2,
        momentum: float = 0.99,
        projection_dim: int = 128,
    ):
        check_masking("mae+id", model, masking)
        super().__init__(model, queue_size, temperature, momentum, projection_dim)
        self.masking, self.mask_ratio = masking, mask_ratio
        self.identity_weight = identity_weight

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """Reconstruction of the masked first view, plus the identity term against the second."""
        masked, whole = batch.views
        reconstruction, _, _, pooled = self.model.forward_pooled(
            masked.imgs, mask=self.batch_mask(batch, masked)
        )
        query = F.normalize(self.head(pooled), dim=1)
        with torch.no_grad():
            self.momentum_model.train(self.model.training)
            key = self._project_momentum(whole.imgs)
        # A copy: the queue is overwritten below, before backward needs these negatives.
        identity = self._info_nce(query, key, self.queue.clone())
        self._enqueue(batch.gather(key))
        return {
            "loss": reconstruction + self.identity_weight * identity,
            "reconstruction": reconstruction.detach(),
            "identity": identity.detach(),
            "embedding_spread": query.detach().float().std(dim=0).mean(),
            "positive_similarity": (query.detach() * key).sum(dim=1).mean(),
        }
