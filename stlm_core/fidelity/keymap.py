"""Parameter names of ``stlm_core``'s STLM model and of the official STLM code, mapped one to one.

The official code (``mob_sam.py``) keeps its modules in two objects: ``Batch_SamE`` (students ``encoderT`` = plain
stream, ``encoderS`` = denoising stream, and a whole MobileSAM instance ``model`` whose prompt encoder and mask decoder
are shared) and ``SegmentationNet`` (the FA head: ``res`` and ``head``). ``stlm_core`` names them ``plain``,
``denoise``, ``decoder`` and ``fa``. Only the FA head's ASPP and final layers are named differently.

Hand-written because the mapping is specific to these two code bases; it is printed by the equivalence check and
tested (every project key maps to a distinct official key of the same shape).
"""

from __future__ import annotations

import re

# stlm_core prefix -> official (object, prefix)
PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("plain.encoder.", "twostream", "encoderT."),
    ("denoise.encoder.", "twostream", "encoderS."),
    ("decoder.mask_decoder.", "twostream", "model.mask_decoder."),
    ("decoder.prompt_encoder.", "twostream", "model.prompt_encoder."),
    ("fa.res.", "segmentation", "res."),
)

# FA head (``fa.head.*``): stlm_core's ASPP (pool / branches / project, each conv-BN-ReLU) and the final layers.
FA_HEAD_RULES: tuple[tuple[str, str], ...] = (
    (r"^fa\.head\.0\.pool\.1\.0\.", "head.0.aspp_feature_extractors.0.1.conv."),
    (r"^fa\.head\.0\.pool\.1\.1\.", "head.0.aspp_feature_extractors.0.1.norm."),
    (r"^fa\.head\.0\.branches\.(\d)\.0\.", None),  # branch i -> extractor i + 1, conv
    (r"^fa\.head\.0\.branches\.(\d)\.1\.", None),  # branch i -> extractor i + 1, norm
    (r"^fa\.head\.0\.project\.0\.", "head.0.aspp_fusion_layer.conv."),
    (r"^fa\.head\.0\.project\.1\.", "head.0.aspp_fusion_layer.norm."),
    (r"^fa\.head\.1\.0\.", "head.1."),  # 3x3 conv (no bias)
    (r"^fa\.head\.1\.1\.", "head.2."),  # its BatchNorm
    (r"^fa\.head\.2\.", "head.4."),  # final 1x1 conv 128 -> 1
)


def official_key(key: str) -> tuple[str, str]:
    """(official object ``twostream`` | ``segmentation``, official key) of a ``stlm_core`` STLM state-dict key.

    >>> official_key("plain.encoder.patch_embed.seq.0.c.weight")
    ('twostream', 'encoderT.patch_embed.seq.0.c.weight')
    >>> official_key("fa.head.0.branches.1.0.weight")
    ('segmentation', 'head.0.aspp_feature_extractors.2.conv.weight')
    """
    for ours, owner, theirs in PREFIXES:
        if key.startswith(ours):
            return owner, theirs + key[len(ours):]
    for pattern, replacement in FA_HEAD_RULES:
        match = re.match(pattern, key)
        if match is None:
            continue
        rest = key[match.end():]
        if replacement is None:
            part = "conv" if pattern.endswith(r"0\.") else "norm"
            return "segmentation", f"head.0.aspp_feature_extractors.{int(match.group(1)) + 1}.{part}.{rest}"
        return "segmentation", replacement + rest
    raise KeyError(f"no official counterpart for {key!r}")


def to_official(state: dict) -> dict[str, dict]:
    """Split a ``stlm_core`` STLM state dict into ``{"twostream": {...}, "segmentation": {...}}`` official dicts."""
    out: dict[str, dict] = {"twostream": {}, "segmentation": {}}
    for key, value in state.items():
        owner, name = official_key(key)
        out[owner][name] = value
    return out


def key_map(keys) -> list[tuple[str, str, str]]:
    """(stlm_core key, official object, official key) for each key, in order."""
    return [(key, *official_key(key)) for key in keys]


def key_map_summary(mapping: list[tuple[str, str, str]]) -> list[str]:
    """Readable lines: one per renamed prefix (with its key count), one per FA-head key (renamed one by one)."""
    lines = []
    for ours, owner, theirs in PREFIXES:
        count = sum(key.startswith(ours) for key, _, _ in mapping)
        lines.append(f"{ours}* -> {owner}.{theirs}*  ({count} keys)")
    lines += [f"{key} -> {owner}.{name}" for key, owner, name in mapping if key.startswith("fa.head.")]
    return lines
