"""Re-id datasets/protocols and the training tool, on the real CUHK folders."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.reid import train as reid_train
from pipeline.reid.datasets import (
    load_image_array,
    load_protocol,
    read_cuhk_folder,
    relabel,
)
from pipeline.reid.recipe import batch_hard_triplet, lr_at, pk_batches
from pipeline.reid.transforms import augment
from pipeline.reid.weights import load_reid_model
from tests.conftest import DATA as SHARED

DATA = SHARED / "reid"


def test_real_folders_counts() -> None:
    cuhk01 = read_cuhk_folder(DATA / "cuhk01")
    assert len(cuhk01) == 971 * 4
    assert len({pid for _, pid, _ in cuhk01}) == 971
    assert {cam for _, _, cam in cuhk01} == {1, 2}
    cuhk03 = read_cuhk_folder(DATA / "cuhk03_train")
    assert len(cuhk03) == 7239
    assert len({pid for _, pid, _ in cuhk03}) == 743


@pytest.mark.parametrize("reverse", [False, True])
def test_cuhk01_protocol_splits(reverse: bool) -> None:
    split = load_protocol("cuhk01-reverse" if reverse else "cuhk01", DATA)
    assert split.num_train_ids == 743 + 485
    assert len(split.train) == 7239 + 485 * 4
    labels = sorted({pid for _, pid, _ in split.train})
    assert labels == list(range(743 + 485))  # contiguous relabelling
    train_cuhk01 = {p.name[:4] for p, _, _ in split.train if p.parent.name == "cuhk01"}
    assert len(train_cuhk01) == 485 and max(train_cuhk01) == "0485"
    q_ids = {pid for _, pid, _ in split.query}
    g_ids = {pid for _, pid, _ in split.gallery}
    assert q_ids == g_ids == set(range(486, 972))
    assert len(split.query) == len(split.gallery) == 486 * 2
    assert {c for _, _, c in split.query} == ({2} if reverse else {1})
    assert {c for _, _, c in split.gallery} == ({1} if reverse else {2})
    test_paths = {p for p, _, _ in split.query + split.gallery}
    assert not test_paths & {p for p, _, _ in split.train}


def test_relabel_keeps_datasets_apart() -> None:
    a = [(Path("a1"), 1, 1), (Path("a2"), 1, 2)]
    b = [(Path("b1"), 1, 1)]
    assert [s[1] for s in relabel([a, b])] == [0, 0, 1]


def test_unknown_protocol_lists_choices() -> None:
    with pytest.raises(ValueError, match="cuhk01.*market1501"):
        load_protocol("dukemtmc", DATA)


def test_market1501_layout(tmp_path: Path) -> None:
    src = sorted((DATA / "cuhk01").glob("000[1-3]_c*.jpg"))
    names = {
        "bounding_box_train": ["0002_c1s1_000151_01.jpg", "0002_c2s1_000301_01.jpg",
                               "0007_c3s2_010101_02.jpg", "0000_c1s1_000001_00.jpg",
                               "-1_c1s1_000002_00.jpg"],
        "query": ["0003_c1s1_000451_00.jpg", "0005_c4s1_000452_00.jpg"],
        "bounding_box_test": ["0003_c2s1_000500_01.jpg", "0000_c3s1_000001_00.jpg",
                              "-1_c5s1_000009_00.jpg", "0005_c6s3_000777_03.jpg"],
    }
    k = 0
    for folder, files in names.items():
        (tmp_path / folder).mkdir()
        for name in files:
            shutil.copy(src[k % len(src)], tmp_path / folder / name)
            k += 1
    (tmp_path / "query" / "Thumbs.db").write_text("x")
    split = load_protocol("market1501", tmp_path)
    assert sorted((p.name, pid, cam) for p, pid, cam in split.train) == [
        ("0002_c1s1_000151_01.jpg", 0, 1),
        ("0002_c2s1_000301_01.jpg", 0, 2),
        ("0007_c3s2_010101_02.jpg", 1, 3),
    ]
    assert [(pid, cam) for _, pid, cam in split.query] == [(3, 1), (5, 4)]
    # Distractors (0000) stay in the gallery, junk (-1) is dropped.
    assert sorted((pid, cam) for _, pid, cam in split.gallery) == [(0, 3), (3, 2), (5, 6)]


def test_image_cache_round_trip(tmp_path: Path) -> None:
    samples = read_cuhk_folder(DATA / "cuhk01")[:6]
    first = load_image_array(samples, hw=(160, 64), cache_dir=tmp_path)
    assert first.shape == (6, 160, 64, 3) and first.dtype == np.uint8
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = load_image_array(samples, hw=(160, 64), cache_dir=tmp_path)
    assert np.array_equal(first, second)


def test_pk_batches_and_schedule() -> None:
    labels = np.repeat(np.arange(10), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    rng = np.random.default_rng(0)
    batches = list(pk_batches(labels, 4, 4, rng))
    assert len(batches) == len(labels) // 16
    for batch in batches:
        ids, counts = np.unique(labels[batch], return_counts=True)
        assert len(ids) == 4 and (counts == 4).all()
    assert lr_at(0, total=100, warmup=10, base=1.0) == pytest.approx(0.1)
    assert lr_at(10, total=100, warmup=10, base=1.0) == pytest.approx(1.0)
    assert lr_at(100, total=100, warmup=10, base=1.0) == pytest.approx(0.01)
    # An elapsed time budget pushes the cosine to its end even if few steps were made.
    assert lr_at(20, total=100, warmup=10, base=1.0, progress=1.0) == pytest.approx(0.01)


def test_augment_and_triplet() -> None:
    images = torch.randint(0, 255, (8, 160, 64, 3), dtype=torch.uint8)
    a = augment(images, generator=torch.Generator().manual_seed(1))
    b = augment(images, generator=torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 160, 64) and torch.equal(a, b)
    labels = torch.tensor([0, 0, 1, 1])
    good = torch.tensor([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    bad = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.01], [0.01, 1.0]])
    assert float(batch_hard_triplet(good, labels, 0.3)) == 0.0
    assert float(batch_hard_triplet(bad, labels, 0.3)) > 1.0


def _args(tmp_path: Path, root: Path, **overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    reid_train.add_arguments(parser)
    small = {"widths": [32, 64, 96], "local_widths": [16, 32, 48], "feature_dim": 64}
    args = parser.parse_args([
        "--data", str(root), "--protocol", "folder", "--out", str(tmp_path / "w.safetensors"),
        "--model-config", json.dumps(small), "--epochs", "12", "--batch-p", "10",
        "--batch-k", "4", "--lr", "3e-3", "--warmup-epochs", "1", "--erase-p", "0",
        "--threads", "1", "--device", "cpu", "--amp", "off", "--no-progress",
        "--cache-dir", str(tmp_path / "cache"), "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--save-every", "5",
    ])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_tiny_training_run_learns_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for path in sorted((DATA / "cuhk01").glob("*.jpg"))[: 20 * 4]:  # 20 real identities
        shutil.copy(path, root / path.name)
    torch.manual_seed(0)
    assert reid_train.main(_args(tmp_path, root)) == 0
    log = [json.loads(line) for line in (tmp_path / "w.train.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == list(range(1, 13))
    losses = [e["loss"] for e in log]
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses
    model, card = load_reid_model(tmp_path / "w.safetensors")
    assert card["complete"] and card["epochs_done"] == 12
    assert card["training_data"]["ids"] == 20
    assert card["final_train"]["loss"] == log[-1]["loss"]
    with torch.no_grad():
        emb = model(torch.randn(2, 3, 160, 64))
    assert emb.shape == (2, 128)
    # Resume: two more epochs continue from the checkpoint instead of starting over.
    assert reid_train.main(_args(tmp_path, root, epochs=14, resume=True)) == 0
    log = [json.loads(line) for line in (tmp_path / "w.train.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == list(range(1, 15))
    assert json.loads((tmp_path / "w.json").read_text())["epochs_done"] == 14


# The trainer's clock runs 1 ms per reading until ``epochs`` lines are in the training log,
# then (after ``reads_after`` more readings) jumps past the 30 s budget, so where the run
# stops does not depend on the machine's speed.
# (5, 0): the budget is found spent when epoch 6 starts, right after --save-every 5 had
#         saved epoch 5 as an unfinished run (the card must be rewritten as finished);
# (4, 4): it runs out inside epoch 5 (a partial epoch is logged and saved).
@pytest.mark.parametrize(("epochs", "reads_after"), [(5, 0), (4, 4)])
def test_time_budget_stop_leaves_a_finished_card(tmp_path: Path, monkeypatch, epochs: int,
                                                reads_after: int) -> None:
    """A time budget ends the run early with a card that says so (the schedule's response
    to elapsed time is tested through ``lr_at`` above)."""
    root = tmp_path / "data"
    root.mkdir()
    for path in sorted((DATA / "cuhk01").glob("*.jpg"))[: 20 * 4]:
        shutil.copy(path, root / path.name)
    log_path = tmp_path / "w.train.jsonl"

    class Clock:
        now, after = 0.0, 0

        @classmethod
        def time(cls) -> float:
            logged = len(log_path.read_text().splitlines()) if log_path.exists() else 0
            if logged >= epochs:
                cls.after += 1
            cls.now += 1e6 if logged >= epochs and cls.after > reads_after else 1e-3
            return cls.now

    monkeypatch.setattr(reid_train, "time", Clock)
    args = _args(tmp_path, root, epochs=50, time_budget_min=0.5)
    assert reid_train.main(args) == 0
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    card = json.loads((tmp_path / "w.json").read_text())
    last = log[-1]
    assert card["stopped_by_time_budget"] and card["complete"]
    assert card["final_train"] == last
    expected = last["epoch"] - 1 + last["epoch_fraction"]
    assert card["epochs_done"] == pytest.approx(expected)
    if reads_after == 0:
        assert len(log) == epochs and card["epochs_done"] == epochs
    else:
        assert epochs < card["epochs_done"] <= epochs + 1
