"""Mimic a face recogniser: distil a teacher's embedding into a fast student (MR-MAE's mimic loss).

Gao et al., "Mimic before Reconstruct: Enhancing Masked Autoencoders with Feature Mimicking"
(MR-MAE, 2023): the visible tokens of a masked view regress a pretrained teacher's features while
the hidden patches still reconstruct pixels. Here the teacher is a face recogniser (dlib's
ResNet), its embedding of each view cached beside the dataset (`facerep.train.teacher`), so it
never runs in the loop. Two losses that measured well for embedding distillation without labels:
`cosine`, one minus the cosine to the teacher's unit embedding (on unit vectors the same as MSE
regression, which is twice it), and `relation` (Park et al., "Relational Knowledge Distillation",
CVPR 2019), the batch's pairwise cosine similarities matched to the teacher's, which teaches
the geometry that verification and search use. Measured on the 15,000-face corpus (10 epochs
of the ResNet student), the cosine alone distilled far better (ORL 95.1% against 86.8%,
cs131 74.3% against 62.7%): it is the default. On an autoencoder with `mask_ratio` > 0 the
reconstruction is kept (MR-MAE); a CNN, or `mask_ratio` 0, distils alone.

On several processes the relation term compares the pairs within each process's rows, as
per-device batch statistics do; the cosine term is the same as on one process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facerep.models.strategies import MaskingStrategy
from facerep.objectives.base import Objective, PretrainBatch, View
from facerep.objectives.momentum import projection_head
from facerep.objectives.reconstruction import MaskedViews, check_masking
from facerep.teachers import TEACHERS, check_teacher

MIMIC_LOSSES = ("cosine", "relation", "cosine+relation")


def mimic(
    model: nn.Module,
    teacher: str = "",
    teacher_centred: bool = False,
    mimic_weight: float = 1.0,
    mimic_loss: str = "cosine",
    masking: MaskingStrategy = "random",
    mask_ratio: float = 0.75,
) -> Mimic:
    """The mimic objective for `model`: with masked reconstruction on an autoencoder (unless
    `mask_ratio` is 0), distillation alone on any other model."""
    if hasattr(model, "forward_decoder") and mask_ratio > 0:
        return MaskedMimic(
            model, teacher, teacher_centred, mimic_weight, mimic_loss, masking, mask_ratio
        )
    return Mimic(model, teacher, teacher_centred, mimic_weight, mimic_loss)


class Mimic(Objective):
    """The student's embedding of each view regresses the teacher's embedding of it.

    Args:
        model: any model with `embed` and `embed_dim`.
        teacher: the teacher's name (`facerep.teachers`); its embeddings come with the views.
        teacher_centred: the views carry the teacher's embeddings with their mean taken away
            (`TeacherTargets.centred`), so the student learns a centred copy of its space.
        mimic_weight: weight of the mimic loss.
        mimic_loss: "cosine", "relation" or "cosine+relation".

    A model whose embedding has the teacher's size is compared directly, so the embedding it
    ships is the distilled one (unwhitened, unless the targets were centred); any other gets a
    projection head, dropped after training.
    """

    # The teacher's embeddings share a common direction a student can match alone.
    collapse_advice = "--teacher-centred, more faces or epochs, or --mimic-loss cosine+relation"

    def __init__(
        self,
        model: nn.Module,
        teacher: str = "",
        teacher_centred: bool = False,
        mimic_weight: float = 1.0,
        mimic_loss: str = "cosine",
    ):
        if not teacher:
            raise ValueError(
                f"objective mimic needs a teacher: pass --teacher ({', '.join(TEACHERS)})"
            )
        if mimic_loss not in MIMIC_LOSSES:
            raise ValueError(f"unknown mimic loss {mimic_loss!r}; choose one of {MIMIC_LOSSES}")
        if not hasattr(model, "embed") or not hasattr(model, "embed_dim"):
            raise ValueError("objective mimic needs a model with embed() and embed_dim")
        dim = check_teacher(teacher).dim
        super().__init__(model)
        self.mimic_weight, self.mimic_loss = mimic_weight, mimic_loss
        same_size = model.embed_dim == dim
        self.head = nn.Identity() if same_size else projection_head(model.embed_dim, dim)
        # A student in the teacher's own space ships it unwhitened: a whitening fitted on its
        # faces re-weights the teacher's geometry (the Spearman agreement of pairwise cosines
        # with dlib's on 1,500 training faces, 40 epochs: 0.87 raw, 0.23 whitened), and at
        # 40 epochs the raw student measured better on every metric of both held-out sets
        # (bench/results/distillation.md of commit 7c9fc25; at 10 and 20 epochs on cs131's
        # accuracy, not ORL's). Centred targets measured better whitened on ORL: kept.
        self.fits_whitening = not same_size or teacher_centred

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """The mimic loss of this process's rows, and how close the student is."""
        view = batch.views[0]
        return self.mimic_terms(self.model.embed(view.imgs), teacher_of(view))

    def mimic_terms(self, pooled: torch.Tensor, teacher: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted mimic loss of pooled student features against unit teacher rows."""
        student = F.normalize(self.head(pooled).float(), dim=1)
        teacher = teacher.float()
        cosine = (student * teacher).sum(dim=1)
        mimic = student.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        if "cosine" in self.mimic_loss:
            mimic = mimic + (1.0 - cosine).mean()
        if "relation" in self.mimic_loss:
            relation = relation_loss(student, teacher)
            mimic = mimic + relation
            terms["relation"] = relation.detach()
        return terms | {
            "loss": self.mimic_weight * mimic,
            "mimic": mimic.detach(),
            "teacher_cosine": cosine.detach().mean(),
            "embedding_spread": student.detach().std(dim=0).mean(),
        }


class MaskedMimic(MaskedViews, Mimic):
    """MR-MAE: MAE's loss on the masked view plus the mimic loss of its pooled visible tokens.

    Args:
        model: an autoencoder with `forward_pooled` (the ViT MAE, the conv-AE).
        teacher, teacher_centred, mimic_weight, mimic_loss: as for `Mimic`.
        masking, mask_ratio: as for `reconstruction`.
    """

    def __init__(
        self,
        model: nn.Module,
        teacher: str = "",
        teacher_centred: bool = False,
        mimic_weight: float = 1.0,
        mimic_loss: str = "cosine",
        masking: MaskingStrategy = "random",
        mask_ratio: float = 0.75,
    ):
        check_masking("mimic", model, masking)
        super().__init__(model, teacher, teacher_centred, mimic_weight, mimic_loss)
        self.masking, self.mask_ratio = masking, mask_ratio

    def forward(self, batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """Reconstruction of the masked view plus the mimic loss of what the encoder saw."""
        view = batch.views[0]
        reconstruction, _, _, pooled = self.model.forward_pooled(
            view.imgs, mask=self.batch_mask(batch, view)
        )
        terms = self.mimic_terms(pooled, teacher_of(view))
        terms["loss"] = terms["loss"] + reconstruction
        return terms | {"reconstruction": reconstruction.detach()}


def teacher_of(view: View) -> torch.Tensor:
    """The teacher's embeddings a view carries; a one-line error when the run has no teacher."""
    if view.teacher is None:
        raise ValueError("objective mimic needs the teacher's embeddings: pass --teacher")
    return view.teacher


def relation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the batch's pairwise cosines, off the diagonal, in both spaces.

    Scaled by the pairs' spread in the teacher's space, so the term weighs about as much as the
    cosine term whatever the teacher's typical similarity is.
    """
    count = len(student)
    if count < 2:
        return student.new_zeros(())
    off_diagonal = ~torch.eye(count, dtype=torch.bool, device=student.device)
    ours = (student @ student.T)[off_diagonal]
    theirs = (teacher @ teacher.T)[off_diagonal]
    return ((ours - theirs) ** 2).mean() / theirs.var().clamp_min(1e-4)
