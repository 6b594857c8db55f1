"""Training batches that keep the training device busy.

The decoded training images live on the training device as one uint8 tensor (27k images
at 160x64 are 0.8 GB: nothing on a GPU). A batch is an index draw (P x K, on the host,
cheap), one gather on the device and the vectorised augmentation of
:mod:`pipeline.reid.transforms` there; with ``prefetch`` a side thread (and on CUDA a
side stream) prepares the next batch while the current one trains.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from pipeline.reid.datasets import ReidSplit
from pipeline.reid.recipe import pk_batches
from pipeline.reid.transforms import AugmentConfig, augment, with_alpha

__all__ = ["TrainBatches", "source_weights"]


def source_weights(split: ReidSplit, labels: np.ndarray, balance: float) -> np.ndarray | None:
    """Per-label sampling weights ``n_ids(source) ** (balance - 1)``.

    ``balance`` 1 draws every identity alike (plain P x K; returns None), 0 every source
    alike, values between interpolate. A label's source is that of its first sample.

    Raises:
        ValueError: ``balance`` outside [0, 1].
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"--source-balance must be in [0, 1], got {balance}")
    if balance == 1.0 or not split.train_source:
        return None
    num_labels = int(labels.max()) + 1
    source_of_label = np.full(num_labels, -1)
    sources = np.asarray(split.train_source)
    for label, source in zip(labels[::-1], sources[::-1], strict=True):
        source_of_label[label] = source
    ids_per_source = np.bincount(source_of_label, minlength=len(split.sources))
    return ids_per_source[source_of_label].astype(np.float64) ** (balance - 1.0)


class TrainBatches:
    """Augmented P x K batches from device-resident uint8 images.

    Args:
        images: uint8 [N,H,W,3] RGB (host tensor; moved to ``device`` once).
        labels: (N,) int labels 0..C-1.
        device: training device.
        p, k: identities per batch and images per identity.
        rng: numpy generator for the index draws.
        seed: seed of the device generator used by the augmentation.
        id_weights: optional per-label sampling weights (see :func:`source_weights`).
        cameras: optional (N,) camera ids for camera-balanced K draws.
        augment: what the augmentation does.
        channels_last: return batches in channels_last memory format.
        prefetch: prepare the next batch on a side thread while the caller trains.
        targets: teacher embeddings [N, 2, D] (plain, mirrored) of ``images``.
        unlabelled: uint8 [M,H,W,3] RGB images without labels (crops cut from footage);
            they need ``targets`` and ``unlabelled_targets`` [M, 2, D].
        unlabelled_per_batch: unlabelled images drawn at random and appended to each
            P x K batch.
    """

    def __init__(self, images: torch.Tensor, labels: np.ndarray, *, device: str, p: int, k: int,
                 rng: np.random.Generator, seed: int, id_weights: np.ndarray | None = None,
                 cameras: np.ndarray | None = None, augment: AugmentConfig | None = None,
                 channels_last: bool = False, prefetch: bool = False,
                 targets: torch.Tensor | None = None,
                 unlabelled: torch.Tensor | None = None,
                 unlabelled_targets: torch.Tensor | None = None,
                 unlabelled_per_batch: int = 0) -> None:
        self.device = torch.device(device)
        self.labels_host = np.asarray(labels)
        self.num_labelled = len(self.labels_host)
        self.num_unlabelled = 0 if unlabelled is None else len(unlabelled)
        self.unlabelled_per_batch = unlabelled_per_batch if self.num_unlabelled else 0
        if self.num_unlabelled:
            # Unlabelled crops ride along with label -1: only the teacher's losses see them.
            if targets is None or unlabelled_targets is None:
                raise ValueError("unlabelled crops train with a teacher's losses only: give "
                                 "teacher targets for both the labelled and unlabelled images")
            if len(unlabelled_targets) != self.num_unlabelled:
                raise ValueError(f"{self.num_unlabelled} unlabelled images but "
                                 f"{len(unlabelled_targets)} teacher targets")
            if unlabelled_per_batch < 1:
                raise ValueError("unlabelled_per_batch must be >= 1 with unlabelled images")
            images = torch.cat([images, unlabelled])
            targets = torch.cat([targets, unlabelled_targets])
        self.images = with_alpha(images).to(self.device)
        all_labels = np.concatenate([self.labels_host,
                                     np.full(self.num_unlabelled, -1, self.labels_host.dtype)])
        self.labels = torch.from_numpy(all_labels).to(self.device)
        self.p, self.k, self.rng = p, k, rng
        self.id_weights, self.cameras = id_weights, cameras
        self.augment = augment or AugmentConfig()
        self.channels_last = channels_last
        self.prefetch = prefetch
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        # Teacher embeddings [N, 2, D] (plain, mirrored): the mirroring is then drawn here,
        # so each image's target is the teacher's view with the same flip.
        self.targets = None if targets is None else targets.to(self.device)
        if self.targets is not None and (self.targets.ndim != 3 or self.targets.shape[1] != 2
                                         or len(self.targets) != len(all_labels)):
            raise ValueError(f"targets must be [N={len(all_labels)}, 2, D], got "
                             f"{tuple(self.targets.shape)}")
        self._stream = (torch.cuda.Stream(device=self.device)
                        if prefetch and self.device.type == "cuda" else None)

    @property
    def batches_per_epoch(self) -> int:
        """Batches in one pass (len(labels) // (P*K) as in :func:`pk_batches`)."""
        num_ids = len(np.unique(self.labels_host))
        return max(1, len(self.labels_host) // (min(self.p, num_ids) * self.k))

    def num_labelled_in(self, batch_size: int) -> int:
        """How many of a batch's leading images are labelled (the rest are unlabelled)."""
        return batch_size - self.unlabelled_per_batch

    def _make(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        index = torch.from_numpy(idx).to(self.device, non_blocking=True)
        images = self.images.index_select(0, index)
        target = None
        if self.targets is None:
            x = augment(images, generator=self.generator, config=self.augment)
        else:
            flip = torch.zeros(len(idx), dtype=torch.long, device=self.device)
            if self.augment.flip:
                flip = (torch.rand(len(idx), generator=self.generator, device=self.device)
                        < 0.5).long()
                images = torch.where(flip.bool().view(-1, 1, 1, 1), images.flip(2), images)
            x = augment(images, generator=self.generator, config=self.augment, flip=False)
            target = self.targets[index, flip]
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                         else torch.contiguous_format)
        return x, self.labels.index_select(0, index), target

    def _indices(self, iters: int) -> Iterator[np.ndarray]:
        draws = pk_batches(self.labels_host, self.p, self.k, self.rng,
                           id_weights=self.id_weights, cameras=self.cameras)
        for it, idx in enumerate(draws):
            if it >= iters:
                return
            if self.unlabelled_per_batch:
                extra = self.rng.choice(self.num_unlabelled, size=self.unlabelled_per_batch,
                                        replace=self.unlabelled_per_batch > self.num_unlabelled)
                idx = np.concatenate([idx, self.num_labelled + extra])
            yield idx

    def epoch(self, iters: int) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                  torch.Tensor | None]]:
        """Yield up to ``iters`` (images float [B,3,H,W], labels long [B], teacher
        embeddings [B, D] or None) on the device. With unlabelled images each batch
        ends with ``unlabelled_per_batch`` of them, label -1."""
        if not self.prefetch:
            for idx in self._indices(iters):
                yield self._make(idx)
            return
        yield from self._prefetched(iters)

    def _prefetched(self, iters: int) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                        torch.Tensor | None]]:
        ready: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for idx in self._indices(iters):
                    if self._stream is not None:
                        with torch.cuda.stream(self._stream):
                            batch = self._make(idx)
                            event = torch.cuda.Event()
                            event.record(self._stream)
                    else:
                        batch, event = self._make(idx), None
                    while not stop.is_set():
                        try:
                            ready.put((batch, event), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ready.put(done)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                ready.put(exc)

        worker = threading.Thread(target=produce, name="reid-batches", daemon=True)
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                batch, event = item
                if event is not None:
                    torch.cuda.current_stream(self.device).wait_event(event)
                    for t in batch:
                        if t is not None:
                            t.record_stream(torch.cuda.current_stream(self.device))
                yield batch
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)
