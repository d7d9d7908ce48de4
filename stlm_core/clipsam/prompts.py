"""Text prompt ensemble of APRIL-GAN: state words x templates, per class name.

For each class name and state (normal, abnormal) every sentence ``template.format(state.format(name))`` is encoded,
L2-normalised, averaged and L2-normalised again, giving ``T`` of shape (embed_dim, 2): column 0 normal, 1 abnormal.
The class name is the raw folder name (``metal_nut``, ``pipe_fryum``), as APRIL-GAN does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

NORMAL_STATES: tuple[str, ...] = (
    "{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect", "{} without damage",
)
ABNORMAL_STATES: tuple[str, ...] = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a low resolution photo of the {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a bright photo of a {}.", "a dark photo of the {}.", "a photo of my {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a photo of one {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "a low resolution photo of a {}.", "a photo of a large {}.",
    "a blurry photo of a {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a photo of the small {}.", "a photo of the large {}.", "a black and white photo of a {}.",
    "a dark photo of a {}.", "a photo of a cool {}.", "a photo of a small {}.", "there is a {} in the scene.",
    "there is the {} in the scene.", "this is a {} in the scene.", "this is the {} in the scene.",
    "this is one {} in the scene.",
)


def state_sentences(class_name: str, states: Sequence[str], templates: Sequence[str] = TEMPLATES) -> list[str]:
    """All sentences of one state group for ``class_name`` (len(states) * len(templates) strings)."""
    return [template.format(state.format(class_name)) for state in states for template in templates]


@torch.no_grad()
def encode_text_prompts(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenizer: Callable[[list[str]], torch.Tensor],
    class_name: str,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Normalised text features ``T`` (embed_dim, 2) of one class: column 0 normal, column 1 abnormal."""
    columns = []
    for states in (NORMAL_STATES, ABNORMAL_STATES):
        sentences = state_sentences(class_name, states)
        feats = []
        for start in range(0, len(sentences), batch_size):
            tokens = tokenizer(sentences[start:start + batch_size]).to(device)
            feats.append(encode_text(tokens).float())
        emb = torch.cat(feats)
        emb = emb / emb.norm(dim=-1, keepdim=True)
        mean = emb.mean(dim=0)
        columns.append(mean / mean.norm())
    return torch.stack(columns, dim=1)
