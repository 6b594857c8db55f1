"""Multi-source re-id training data, cross-domain protocols, vectorised augmentation and
the device batch feeder, on the real shared folders."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.reid import train as reid_train
from pipeline.reid.batches import TrainBatches, source_weights
from pipeline.reid.datasets import (
    SOURCE_GROUPS,
    expand_sources,
    load_protocol,
    read_cuhk_folder,
    with_extra_sources,
)
from pipeline.reid.recipe import pk_batches
from pipeline.reid.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, augment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reid"


def test_extra_sources_relabel_without_collisions() -> None:
    base = load_protocol("cuhk01", DATA)
    split = with_extra_sources(base, DATA, "detected,viper_train,grid")
    assert split.sources == ("cuhk03_train", "cuhk01", "cuhk03_detected_train",
                             "viper_train", "grid")
    assert len(split.train) == len(base.train) + 7239 + 632 + 500
    # CUHK03 detected crops are the same 743 people: they join their labelled ids.
    assert split.num_train_ids == base.num_train_ids + 316 + 250
    labels = {s[1] for s in split.train}
    assert labels == set(range(split.num_train_ids))
    by_source: dict[str, set[int]] = {}
    for (_, label, _), src in zip(split.train, split.train_source, strict=True):
        by_source.setdefault(split.sources[src], set()).add(label)
    assert by_source["cuhk03_detected_train"] == by_source["cuhk03_train"]
    others = ["cuhk01", "viper_train", "grid", "cuhk03_train"]
    for i, a in enumerate(others):
        for b in others[i + 1:]:
            assert not by_source[a] & by_source[b], (a, b)
    # Same file name in the labelled and detected folders -> same label.
    by_name = {}
    for path, label, _ in split.train:
        if path.parent.name.startswith("cuhk03"):
            by_name.setdefault(path.name, set()).add(label)
    assert all(len(v) == 1 for v in by_name.values())
    # Cameras of different folders never share an id.
    cams: dict[int, set[str]] = {}
    for (path, _, cam) in split.train:
        cams.setdefault(cam, set()).add(path.parent.name)
    assert all(len(v) == 1 for v in cams.values())
    # The test split is untouched.
    assert split.query == base.query and split.gallery == base.gallery


def test_unknown_source_is_named() -> None:
    with pytest.raises(ValueError, match="'market'.*cuhk03_detected_train"):
        expand_sources("detected,market")
    base = load_protocol("viper", DATA)
    with pytest.raises(ValueError, match="viper_train.*test folder"):
        with_extra_sources(base, DATA, "viper_train")


def test_groups_expand_in_order_without_duplicates() -> None:
    assert expand_sources("detected,all")[0] == "cuhk03_detected_train"
    assert len(expand_sources("all,detected")) == len(SOURCE_GROUPS["all"])
    assert not set(SOURCE_GROUPS["indomain"]) & set(SOURCE_GROUPS["xdomain"])


@pytest.mark.parametrize("name,queries,gallery", [
    ("prid2011", 200, 749), ("viper", 316, 316), ("grid", 250, 250), ("ilids", 119, 357)])
def test_cross_domain_protocols(name: str, queries: int, gallery: int) -> None:
    split = load_protocol(name, DATA)
    assert (len(split.query), len(split.gallery)) == (queries, gallery)
    assert not split.train
    g_ids = {s[1] for s in split.gallery}
    assert all(s[1] in g_ids for s in split.query)  # every query has a true match
    q_paths = {s[0] for s in split.query}
    assert not q_paths & {s[0] for s in split.gallery}
    # Query and gallery cameras differ, so the same-camera exclusion never hides a match.
    assert not {s[2] for s in split.query} & {s[2] for s in split.gallery}


def test_source_weights_balance_sources() -> None:
    split = with_extra_sources(load_protocol("cuhk01", DATA), DATA, "pku_reid")
    labels = np.array([s[1] for s in split.train])
    assert source_weights(split, labels, 1.0) is None
    w = source_weights(split, labels, 0.0)
    rng = np.random.default_rng(0)
    pairs = zip(split.train, split.train_source, strict=True)
    src_of_label = {s[1]: split.sources[j] for s, j in pairs}
    counts: Counter = Counter()
    for idx in pk_batches(labels, 16, 2, rng, id_weights=w):
        counts.update(src_of_label[int(label)] for label in np.unique(labels[idx]))
    # pku_reid has 74 of 1,302 ids; with balance 0 each of the 3 sources gets ~1/3 of draws.
    share = counts["pku_reid"] / sum(counts.values())
    assert 0.25 < share < 0.42, counts


def test_camera_balanced_draws_cross_cameras() -> None:
    labels = np.repeat(np.arange(50), 8)
    cameras = np.tile([1, 1, 1, 1, 1, 1, 2, 2], 50)  # camera 2 is rare
    rng = np.random.default_rng(0)
    for idx in pk_batches(labels, 8, 4, rng, cameras=cameras):
        for label in np.unique(labels[idx]):
            cams = cameras[idx][labels[idx] == label]
            assert sorted(Counter(cams).values()) == [2, 2]


def _real_batch(n: int = 16) -> torch.Tensor:
    from pipeline.reid.datasets import load_image_array

    samples = read_cuhk_folder(DATA / "cuhk01")[:n]
    return torch.from_numpy(load_image_array(samples, hw=(160, 64)))


def test_augment_shapes_ranges_and_determinism() -> None:
    images = _real_batch()
    cfg = AugmentConfig(jitter_p=1.0, gray_p=0.3, style_p=0.5)
    a = augment(images, generator=torch.Generator().manual_seed(3), config=cfg)
    b = augment(images, generator=torch.Generator().manual_seed(3), config=cfg)
    c = augment(images, generator=torch.Generator().manual_seed(4), config=cfg)
    assert a.shape == (16, 3, 160, 64) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Outside erased pixels every value is a normalised colour in [0, 1].
    plain = augment(images, generator=torch.Generator().manual_seed(3), config=cfg,
                    erase_p=0.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = plain * std + mean
    assert rgb.min() >= -1e-4 and rgb.max() <= 1 + 1e-4


def test_augment_flip_shift_and_erase_are_applied() -> None:
    images = _real_batch(64)
    ref = augment(images, generator=torch.Generator().manual_seed(0), pad=0, flip=False,
                  erase_p=0.0)
    flipped = augment(images, generator=torch.Generator().manual_seed(0), pad=0, flip=True,
                      erase_p=0.0)
    same = [torch.allclose(flipped[i], ref[i]) for i in range(64)]
    mirrored = [torch.allclose(flipped[i], ref[i].flip(2)) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 16 < sum(mirrored) < 48  # about half
    shifted = augment(images, generator=torch.Generator().manual_seed(0), pad=8, flip=False,
                      erase_p=0.0)
    moved = 0
    for i in range(64):
        if not torch.allclose(shifted[i], ref[i]):
            moved += 1
            # a shifted crop with a border of the mean colour (~0 after normalisation;
            # the uint8 mean is rounded, hence the tolerance)
            flat = shifted[i].abs() < 0.03
            zero_rows = flat.all(0).all(1).sum()
            zero_cols = flat.all(0).all(0).sum()
            assert zero_rows + zero_cols > 0
    assert moved > 48
    erased = augment(images, generator=torch.Generator().manual_seed(0), pad=0, flip=False,
                     erase_p=1.0)
    changed = (erased != ref).any(1)  # [N,H,W]
    share = changed.float().mean((1, 2))
    assert (share > 0.01).all() and (share < 0.45).all()
    for i in range(4):  # one rectangle: changed pixels fill their bounding box
        ys, xs = torch.nonzero(changed[i], as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert changed[i].sum() >= 0.95 * box


def test_train_batches_prefetch_matches_plain() -> None:
    images = _real_batch(64)
    labels = np.repeat(np.arange(16), 4)

    def draw(prefetch: bool) -> list[torch.Tensor]:
        feeder = TrainBatches(images, labels, device="cpu", p=4, k=4,
                              rng=np.random.default_rng(5), seed=5, prefetch=prefetch)
        return [x for x, _, _ in feeder.epoch(3)]

    plain, fetched = draw(False), draw(True)
    assert len(plain) == len(fetched) == 3
    assert all(torch.equal(a, b) for a, b in zip(plain, fetched, strict=True))
    # stopping early leaves no thread behind and raises nothing
    feeder = TrainBatches(images, labels, device="cpu", p=4, k=4,
                          rng=np.random.default_rng(5), seed=5, prefetch=True)
    for _ in feeder.epoch(10):
        break


def test_multi_source_training_run(tmp_path: Path) -> None:
    """A short real training run on three sources with every new option on: loss falls."""
    import shutil

    root = tmp_path / "data"
    root.mkdir()
    for path in sorted((DATA / "cuhk01").glob("*.jpg"))[: 12 * 4]:  # 12 real identities
        shutil.copy(path, root / path.name)
    for name, ids in (("pku_reid", 8), ("caviar4reid", 8)):
        (root / name).mkdir()
        for path, pid, _ in read_cuhk_folder(DATA / name):
            if pid <= ids:
                shutil.copy(path, root / name / path.name)
    parser = argparse.ArgumentParser()
    reid_train.add_arguments(parser)
    out = tmp_path / "m.safetensors"
    args = parser.parse_args([
        "--model", "hacnn", "--model-config", json.dumps({"widths": [32, 64, 96],
                                                          "local_widths": [16, 32, 48],
                                                          "feature_dim": 64}),
        "--data", str(root), "--protocol", "folder", "--out", str(out),
        "--extra-train", "pku_reid,viper_train", "--source-balance", "0.5",
        "--camera-balanced", "--jitter-p", "0.5", "--gray-p", "0.1", "--style-p", "0.3",
        "--epochs", "12", "--max-iters", "4", "--batch-p", "8", "--batch-k", "4",
        "--lr", "3e-3", "--warmup-epochs", "0", "--no-progress", "--prefetch", "on",
        "--threads", "1", "--amp", "off", "--save-every", "12", "--erase-p", "0",
        "--cache-dir", str(tmp_path / "cache"), "--checkpoint-dir", str(tmp_path / "ck"),
    ])
    with pytest.raises(FileNotFoundError, match="viper_train"):
        reid_train.train(args)
    args.extra_train = "pku_reid,caviar4reid"
    torch.manual_seed(0)
    card = reid_train.train(args)
    log = [json.loads(line) for line in out.with_name("m.train.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log]
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses
    assert card["training_data"]["sources"] == {
        "data": {"images": 48, "ids": 12},
        "pku_reid": {"images": sum(1 for _ in (root / "pku_reid").iterdir()), "ids": 8},
        "caviar4reid": {"images": sum(1 for _ in (root / "caviar4reid").iterdir()), "ids": 8},
    }
    assert card["training_data"]["ids"] == 12 + 8 + 8
