"""Registry of official pretrained checkpoints and where to find them locally .

Lookup order for a checkpoint file: ``$STLM_WEIGHTS`` (a folder), then ``./weights``, then
``~/.cache/stlm_core/weights``. Nothing here downloads; ``stlm weights download NAME`` does, explicitly.
A ``sha256`` of ``None`` means the project does not know the official checksum: the download command then
prints the hash it computed, and the identity recorded in run records is ``<name>@<computed sha256>``.
The known checksums are the widely published hashes of the official files (SAM, MobileSAM: cross-checked in
several independent public download scripts; OpenAI CLIP: the hash OpenAI embeds in its download URL).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from stlm_core.errors import WeightsError
from stlm_core.fileio import file_sha256

AUTO = "auto"  # resolve a checkpoint through the registry lookup (see resolve_weights)


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    filename: str
    url: str
    sha256: str | None
    loader: str
    licence: str
    note: str = ""


REGISTRY: dict[str, WeightsEntry] = {
    "sam_vit_h": WeightsEntry(
        "sam_vit_h", "sam_vit_h_4b8939.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", "segment_anything.sam_model_registry['vit_h']", "Apache-2.0", "STLM teacher; CLIP-SAM paper profile",
    ),
    "sam_vit_b": WeightsEntry(
        "sam_vit_b", "sam_vit_b_01ec64.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", "segment_anything.sam_model_registry['vit_b']", "Apache-2.0", "CLIP-SAM cpu profile",
    ),
    "mobile_sam": WeightsEntry(
        "mobile_sam", "mobile_sam.pt",
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f", "mobile_sam.sam_model_registry['vit_t']", "Apache-2.0", "STLM shared decoder / student init",
    ),
    # OpenAI embeds the file's sha256 in its download URL.
    "clip_vit_l14_336_openai": WeightsEntry(
        "clip_vit_l14_336_openai", "ViT-L-14-336px.pt",
        "https://openaipublic.azureedge.net/clip/models/"
        "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
        "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
        "open_clip.create_model('ViT-L-14-336', pretrained=<file>)", "MIT", "CLIP-SAM paper profile",
    ),
    "clip_vit_b16_openai": WeightsEntry(
        "clip_vit_b16_openai", "ViT-B-16.pt",
        "https://openaipublic.azureedge.net/clip/models/"
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        "open_clip.create_model('ViT-B-16', pretrained=<file>)", "MIT", "CLIP-SAM cpu profile",
    ),
}


def weights_dirs() -> list[Path]:
    """Folders searched for checkpoint files, in order."""
    dirs = []
    if os.environ.get("STLM_WEIGHTS"):
        dirs.append(Path(os.environ["STLM_WEIGHTS"]).expanduser())
    dirs += [Path("weights"), Path.home() / ".cache" / "stlm_core" / "weights"]
    return dirs


def entry(name: str) -> WeightsEntry:
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def find_weights(name: str) -> Path | None:
    """Path of the local checkpoint file for ``name``, or ``None`` if it is not present."""
    filename = entry(name).filename
    for folder in weights_dirs():
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    return None


def require_weights(name: str, purpose: str = "") -> Path:
    """Path of the checkpoint for ``name``; raise :class:`WeightsError` naming the download command if absent."""
    path = find_weights(name)
    if path is None:
        searched = ", ".join(str(d) for d in weights_dirs())
        raise WeightsError(
            f"{purpose + ' needs ' if purpose else ''}the official checkpoint {entry(name).filename} ({name}), "
            f"which is not in {searched}. Download it with 'stlm weights download {name}' "
            "(or set $STLM_WEIGHTS to the folder that holds it), or use --profile cpu / smoke."
        )
    return path


def resolve_weights(name: str | None, *, required: bool, purpose: str = "",
                    path: str | os.PathLike | None = AUTO) -> Path | None:
    """The checkpoint file to load, or ``None`` for random initialisation. The one resolver of the package.

    Args:
        name: registry name (``None``: the component has no official checkpoint; random init).
        required: raise :class:`WeightsError` naming the download command when the file is not found
            (the ``paper`` profile); otherwise a missing file gives ``None``.
        purpose: what needs the file, for the error message.
        path: ``"auto"`` (default) = registry lookup ($STLM_WEIGHTS, ./weights, ~/.cache/stlm_core/weights);
            an explicit file (must exist); ``None`` = never load weights.
    """
    if path is None:
        return None
    if path != AUTO:
        explicit = Path(path)
        if not explicit.is_file():
            raise WeightsError(f"checkpoint file {explicit} does not exist; pass an existing file or omit the option.")
        return explicit
    if name is None:
        return None
    return require_weights(name, purpose) if required else find_weights(name)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def weights_identity(name: str, path: str | os.PathLike | None) -> str:
    """``'random-init'`` when ``path`` is None, else ``'<name>@<sha256>'`` (hash of the actual file, cached per
    file size and modification time, since official checkpoints are gigabytes)."""
    if path is None:
        return "random-init"
    stat = os.stat(path)
    return f"{name}@{_cached_sha256(os.fspath(path), stat.st_size, stat.st_mtime_ns)}"
