"""lossviz: loss functions of metric learning, contrastive learning and classification, seen
through their gradients.

The one idea: a pair-based loss is a function ``L(S, labels)`` of the similarity matrix ``S``, and
``|dL/dS_ij|`` says how much pair (i, j) matters (General Pair Weighting)::

    import lossviz as lv
    S = lv.similarity(embeddings)                # B x B cosine similarities
    loss = lv.ms_loss(S, labels)                 # Multi-Similarity loss
    W = lv.pair_weights(lv.ms_loss, S, labels)   # B x B pair weights, by autograd
"""

from . import augment, checks, data, metrics, models
from .checks import set_validation, validation, validation_enabled
from .contrastive import (
    hard_nt_xent_loss,
    negative_weight_entropy,
    nt_xent_loss,
    nt_xent_weights,
    relative_penalty,
    simple_contrastive_loss,
    supcon_loss,
)
from .margins import (
    arcface_loss,
    cosface_loss,
    cosine_logits,
    margin_softmax_loss,
    normface_loss,
    proxy_weights,
)
from .metrics import alignment, map_at_r, recall_at_k, roc_auc, tar_at_far, tolerance, uniformity
from .mining import ms_mining
from .pairs import (
    MS_PRESETS,
    PAIR_LOSSES,
    binomial_deviance_loss,
    contrastive_loss,
    lifted_structure_loss,
    ms_loss,
    ms_loss_formula,
    triplet_loss,
)
from .pml import from_pml
from .similarity import pair_masks, similarity, similarity_formula
from .weights import active_fraction, logit_weights, pair_weights, sample_weights

__version__ = "0.1.0"

__all__ = [
    "MS_PRESETS", "PAIR_LOSSES", "active_fraction", "from_pml", "binomial_deviance_loss", "contrastive_loss",
    "lifted_structure_loss", "map_at_r", "ms_loss", "ms_loss_formula", "ms_mining", "pair_masks", "pair_weights", "logit_weights", "sample_weights",
    "recall_at_k", "set_validation", "similarity",
    "similarity_formula", "triplet_loss", "validation", "validation_enabled",
    "nt_xent_loss", "supcon_loss", "arcface_loss", "cosface_loss", "cosine_logits", "margin_softmax_loss",
    "normface_loss", "proxy_weights", "roc_auc", "tar_at_far", "checks", "data", "metrics", "models",
    "augment", "hard_nt_xent_loss", "negative_weight_entropy", "nt_xent_weights", "relative_penalty",
    "simple_contrastive_loss", "alignment", "tolerance", "uniformity",
]
