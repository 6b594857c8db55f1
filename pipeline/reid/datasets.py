"""Re-id image folders, evaluation protocols and a decoded-once training image cache.

Supported layouts:

* CUHK-style folder of ``PPPP_cC_KK.jpg`` (person id, camera, image index), as in
  ``shared/data/reid/cuhk01`` and ``cuhk03_train``.
* Market-1501: ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` with
  ``PPPP_cCsS_FFFFFF_NN.jpg``; id ``-1`` (junk) and ``0000`` (distractors) are dropped
  from training, ``-1`` is dropped from the gallery.

A sample is ``(path, pid, camid)``. Training lists are relabelled to contiguous ids
0..K-1 (ids from different source datasets never merge); query/gallery keep original ids.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.registry import lookup

log = logging.getLogger(__name__)

Sample = tuple[Path, int, int]
"""(image path, person id, camera id)."""

_CUHK_RE = re.compile(r"^(\d+)_c(\d+)_(\d+)\.(?:jpg|jpeg|png|webp)$", re.IGNORECASE)
_MARKET_RE = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+)?_\d+_\d+\.(?:jpg|jpeg|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class ReidSplit:
    """A train/query/gallery split.

    Attributes:
        name: protocol name, e.g. ``"cuhk01"``.
        train: training samples with contiguous labels 0..num_train_ids-1.
        query: query samples (original ids).
        gallery: gallery samples (original ids).
        description: one line saying what the split is (goes into model cards).
        sources: names of the training sources (folders), in order; empty when the
            split has a single unnamed source.
        train_source: per training sample, its index into ``sources`` (empty when
            ``sources`` is).
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    description: str = ""
    sources: tuple[str, ...] = ()
    train_source: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.train_source and len(self.train_source) != len(self.train):
            raise ValueError("train_source must have one entry per training sample")

    @property
    def num_train_ids(self) -> int:
        """Number of distinct training identities."""
        return len({pid for _, pid, _ in self.train})


def _require_dir(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"re-id image folder not found: {folder}")
    return folder


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
"""Image files read from crop folders."""


def unlabelled_samples(folders: Sequence[Path]) -> list[Sample]:
    """Every image under ``folders`` (recursively, sorted) as a sample of person -1,
    camera 0: crops without labels, for a teacher's losses only.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: a folder holds no image.
    """
    out: list[Sample] = []
    for folder in map(_require_dir, folders):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"no image files under {folder} (unlabelled crops: .jpg, .png, "
                             "...; `mtmc reid crops` cuts them from footage)")
        out += [(p, -1, 0) for p in found]
    return out


def read_cuhk_folder(folder: Path) -> list[Sample]:
    """Read a folder of ``PPPP_cC_KK.jpg`` images, sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no image with that naming.
    """
    folder = _require_dir(folder)
    samples = []
    for path in sorted(folder.iterdir()):
        match = _CUHK_RE.match(path.name)
        if match:
            samples.append((path, int(match.group(1)), int(match.group(2))))
    if not samples:
        raise ValueError(f"{folder}: no images named PPPP_cC_KK.jpg (person_camera_index)")
    return samples


def read_market_folder(folder: Path, *, drop_distractors: bool) -> list[Sample]:
    """Read one Market-1501 folder; id -1 (junk) always dropped, 0000 when asked."""
    folder = _require_dir(folder)
    samples = []
    for path in sorted(folder.iterdir()):
        match = _MARKET_RE.match(path.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid < 0 or (drop_distractors and pid == 0):
            continue
        samples.append((path, pid, int(match.group(2))))
    if not samples:
        raise ValueError(f"{folder}: no images named PPPP_cCsS_FFFFFF_NN.jpg (Market-1501)")
    return samples


def relabel(groups: Sequence[Sequence[Sample]]) -> list[Sample]:
    """Concatenate sample lists, giving each (group, pid) its own contiguous label."""
    out: list[Sample] = []
    mapping: dict[tuple[int, int], int] = {}
    for g, samples in enumerate(groups):
        for path, pid, cam in samples:
            label = mapping.setdefault((g, pid), len(mapping))
            out.append((path, label, cam))
    return out


def cuhk01_protocol(root: Path, *, reverse: bool = False) -> ReidSplit:
    """The CUHK01 protocol of shared/data/reid/README: train on all of cuhk03_train plus
    CUHK01 ids 1-485; test on CUHK01 ids 486-971, camera 1 query / camera 2 gallery
    (``reverse=True``: camera 2 query / camera 1 gallery).

    Args:
        root: folder holding ``cuhk01/`` and ``cuhk03_train/``.
    """
    root = Path(root)
    cuhk01 = read_cuhk_folder(root / "cuhk01")
    cuhk03 = read_cuhk_folder(root / "cuhk03_train")
    train = relabel([cuhk03, [s for s in cuhk01 if s[1] <= 485]])
    test = [s for s in cuhk01 if s[1] >= 486]
    qcam, gcam = (2, 1) if reverse else (1, 2)
    return ReidSplit(
        name="cuhk01" + ("-reverse" if reverse else ""),
        train=train,
        query=[s for s in test if s[2] == qcam],
        gallery=[s for s in test if s[2] == gcam],
        description=(
            "train: cuhk03_train (743 ids) + CUHK01 ids 0001-0485; test: CUHK01 ids "
            f"0486-0971, query camera {qcam}, gallery camera {gcam}"
        ),
    )


def market1501_protocol(root: Path) -> ReidSplit:
    """Standard Market-1501 split from ``root`` (the folder with bounding_box_train/)."""
    root = Path(root)
    train = relabel([read_market_folder(root / "bounding_box_train", drop_distractors=True)])
    return ReidSplit(
        name="market1501",
        train=train,
        query=read_market_folder(root / "query", drop_distractors=True),
        gallery=read_market_folder(root / "bounding_box_test", drop_distractors=False),
        description=f"Market-1501 layout at {root.name}: bounding_box_train / query / "
        "bounding_box_test",
    )


def folder_protocol(root: Path) -> ReidSplit:
    """Train on every ``PPPP_cC_KK.jpg`` image in ``root`` (no test split)."""
    return ReidSplit(
        name="folder",
        train=relabel([read_cuhk_folder(root)]),
        query=[],
        gallery=[],
        description=f"all images of {Path(root).name}",
    )


def _first_vs_rest(folder: Path, name: str, description: str) -> ReidSplit:
    """Query = each person's first image (camera relabelled 1), gallery = all their other
    images (camera relabelled 2): for folders whose camera labels are unknown or mixed."""
    samples = read_cuhk_folder(folder)
    seen: set[int] = set()
    query, gallery = [], []
    for path, pid, _ in samples:
        if pid in seen:
            gallery.append((path, pid, 2))
        else:
            seen.add(pid)
            query.append((path, pid, 1))
    return ReidSplit(name=name, train=[], query=query, gallery=gallery,
                     description=description)


def prid2011_protocol(root: Path) -> ReidSplit:
    """PRID 2011 single-shot, camera a -> b: queries are the 200 people seen by both
    cameras, the gallery every camera-b image (749, 549 of them distractors)."""
    samples = read_cuhk_folder(Path(root) / "prid2011")
    both = {pid for _, pid, cam in samples if cam == 1} & {
        pid for _, pid, cam in samples if cam == 2}
    return ReidSplit(
        name="prid2011",
        train=[],
        query=[s for s in samples if s[2] == 1 and s[1] in both],
        gallery=[s for s in samples if s[2] == 2],
        description="PRID 2011: camera a images of people seen by both cameras vs every "
        "camera b image",
    )


def viper_protocol(root: Path) -> ReidSplit:
    """VIPeR (the shipped half, 316 people): camera a -> camera b."""
    samples = read_cuhk_folder(Path(root) / "viper_train")
    return ReidSplit(name="viper", train=[], query=[s for s in samples if s[2] == 1],
                     gallery=[s for s in samples if s[2] == 2],
                     description="VIPeR, 316 people: camera a vs camera b")


def grid_protocol(root: Path) -> ReidSplit:
    """QMUL GRID, 250 pairs seen by two different cameras: first image -> second."""
    return _first_vs_rest(Path(root) / "grid", "grid",
                          "GRID, 250 people: first image vs the other camera's image")


def ilids_protocol(root: Path) -> ReidSplit:
    """QMUL i-LIDS, 119 people: each person's first image vs all other images."""
    return _first_vs_rest(Path(root) / "ilids", "ilids",
                          "i-LIDS, 119 people: first image of each vs all other images")


PROTOCOLS: dict[str, Callable[[Path], ReidSplit]] = {
    "cuhk01": cuhk01_protocol,
    "cuhk01-reverse": lambda root: cuhk01_protocol(root, reverse=True),
    "market1501": market1501_protocol,
    "folder": folder_protocol,
    "prid2011": prid2011_protocol,
    "viper": viper_protocol,
    "grid": grid_protocol,
    "ilids": ilids_protocol,
}

# Extra training folders under the data root (shared/data/README.md, "extra training
# sources"), and named groups of them. The ``xdomain`` group is what the cross-domain
# protocols above test on: a model meant for those rows must not train on it.
EXTRA_SOURCES = ("cuhk03_detected_train", "caviar4reid", "threedpes", "conreid",
                 "pku_reid", "viper_train", "prid2011", "grid", "ilids")
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "detected": ("cuhk03_detected_train",),
    "extra": ("caviar4reid", "threedpes", "conreid", "pku_reid"),
    "xdomain": ("viper_train", "prid2011", "grid", "ilids"),
}
SOURCE_GROUPS["indomain"] = SOURCE_GROUPS["detected"] + SOURCE_GROUPS["extra"]
SOURCE_GROUPS["all"] = EXTRA_SOURCES


def expand_sources(spec: str | Sequence[str]) -> list[str]:
    """Names and group names (comma-separated or a list) -> unique folder names, in order.

    Raises:
        ValueError: an unknown name (the message names it and lists the choices).
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    out: list[str] = []
    for item in filter(None, items):
        names = SOURCE_GROUPS.get(item, (item,))
        for name in names:
            if name not in EXTRA_SOURCES:
                choices = ", ".join(list(EXTRA_SOURCES) + sorted(SOURCE_GROUPS))
                raise ValueError(f"unknown re-id training source {item!r}; choose from: "
                                 f"{choices}")
            if name not in out:
                out.append(name)
    return out


def with_extra_sources(split: ReidSplit, root: Path, extra: str | Sequence[str]) -> ReidSplit:
    """Add extra training folders to ``split`` (its test part is unchanged).

    Each folder's ids become new labels after the split's own (ids never merge across
    folders, except the two CUHK03 folders, which hold the same people with the same ids);
    cameras become ``(source, camera)`` pairs numbered 1.. so that no two sources share a
    camera id.

    Raises:
        ValueError: an unknown source name, or a folder that is also a test folder.
        FileNotFoundError: a source folder is missing under ``root``.
    """
    names = expand_sources(extra)
    test_folders = {Path(p).parent.name for p, _, _ in split.query + split.gallery}
    clash = [n for n in names if n in test_folders]
    if clash:
        raise ValueError(f"training source {clash[0]!r} is a test folder of protocol "
                         f"{split.name!r}; leave it out of the extra training sources")
    samples = list(split.train)
    for name in names:
        folder = Path(root) / name
        if not folder.is_dir():
            raise FileNotFoundError(f"re-id training source {name!r} not found: {folder} "
                                    "(see shared/data/README.md)")
        samples += read_cuhk_folder(folder)
    base = len(split.train)
    labels: dict[tuple[str, int], int] = {}
    cams: dict[tuple[str, int], int] = {}
    sources: dict[str, int] = {}
    train: list[Sample] = []
    source_of: list[int] = []
    for i, (path, pid, cam) in enumerate(samples):
        folder = Path(path).parent.name
        match = _CUHK_RE.match(Path(path).name)
        if i < base and not match:
            person = (f"base:{folder}", pid)  # another naming, already relabelled
        else:
            pid = int(match.group(1))
            # CUHK03 labelled and detected crops show the same people under the same ids.
            space = "cuhk03" if folder in ("cuhk03_train", "cuhk03_detected_train") else folder
            person = (space, pid)
        label = labels.setdefault(person, len(labels))
        camera = cams.setdefault((folder, cam), len(cams) + 1)
        train.append((path, label, camera))
        source_of.append(sources.setdefault(folder, len(sources)))
    return ReidSplit(
        name=split.name,
        train=train,
        query=split.query,
        gallery=split.gallery,
        description=split.description + "; extra training sources: " + ", ".join(names),
        sources=tuple(sources),
        train_source=tuple(source_of),
    )


def load_protocol(name: str, root: Path) -> ReidSplit:
    """Build the split called ``name`` from data under ``root``.

    Raises:
        ValueError: unknown protocol (the message lists the choices).
    """
    return lookup(PROTOCOLS, name, "re-id protocol")(Path(root))


def read_image_rgb(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """Decode ``path`` and resize to ``hw`` (height, width); returns uint8 [H, W, 3] RGB.

    Raises:
        ValueError: the file cannot be decoded.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    image = cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_image_array(
    samples: Sequence[Sample], *, hw: tuple[int, int], cache_dir: Path | None = None
) -> np.ndarray:
    """Decode and resize every sample once into uint8 [N, H, W, 3] RGB.

    With ``cache_dir`` the array is stored as an .npz keyed by a hash of the paths,
    file sizes and ``hw``, so later runs skip JPEG decoding (seconds instead of a minute
    on two cores).
    """
    key = hashlib.sha1(repr(hw).encode())
    for path, _, _ in samples:
        key.update(str(path).encode())
        key.update(str(Path(path).stat().st_size).encode())
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"reid_images_{hw[0]}x{hw[1]}_{key.hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as data:
                images = data["images"]
            if len(images) == len(samples):
                return images
    images = np.empty((len(samples), hw[0], hw[1], 3), dtype=np.uint8)
    for i, (path, _, _) in enumerate(samples):
        images[i] = read_image_rgb(path, hw)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, images=images)
        tmp.replace(cache)
        log.info("cached %d decoded images in %s", len(images), cache)
    return images
