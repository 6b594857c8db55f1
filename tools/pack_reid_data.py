"""Pack re-id image folders small enough to travel to a lent GPU machine.

The device tool carries at most 64 MiB (the repository included). Every image of the
chosen folders is resized once to the training input size and re-encoded as WebP, under
the same folder and file names (``PPPP_cC_KK.webp``), so the packed root is a drop-in
``--data`` for ``mtmc reid train`` / ``reid eval`` (the loaders accept .webp). At 160x64
and quality 70 the nine training sources plus CUHK03 and CUHK01 (27,700 images) take
43 MiB.

Usage (from the repository root)::

    python3 tools/pack_reid_data.py --src ../shared/data/reid --out .pack/reid \\
        --folders cuhk01,cuhk03_train,all --hw 160,64 --quality 70 --max-mib 50

Exits with status 2 (and a message) when a folder is missing or the pack exceeds
``--max-mib``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pipeline.reid.datasets import expand_sources, read_cuhk_folder  # noqa: E402


def pack(src: Path, out: Path, folders: list[str], hw: tuple[int, int], quality: int) -> int:
    """Write every image of ``folders`` under ``out``; returns the bytes written."""
    total = 0
    for name in folders:
        samples = read_cuhk_folder(src / name)
        dest = out / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for path, _, _ in samples:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot decode {path}")
            image = cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
            if not ok:
                raise ValueError(f"cannot encode {path} as WebP")
            (dest / (Path(path).stem + ".webp")).write_bytes(buf.tobytes())
            total += len(buf)
        print(f"{name}: {len(samples)} images", flush=True)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "reid")
    parser.add_argument("--out", type=Path, default=REPO / ".pack" / "reid")
    parser.add_argument("--folders", default="cuhk01,cuhk03_train,all",
                        help="folder names and source groups (see --extra-train)")
    parser.add_argument("--hw", default="160,64", help="H,W of the packed images")
    parser.add_argument("--quality", type=int, default=70, help="WebP quality 1-100")
    parser.add_argument("--max-mib", type=float, default=50.0)
    args = parser.parse_args()
    names = [n for n in args.folders.split(",") if n in ("cuhk01", "cuhk03_train")]
    rest = [n for n in args.folders.split(",") if n not in ("cuhk01", "cuhk03_train")]
    try:
        folders = names + expand_sources(rest)
        hw = tuple(int(v) for v in args.hw.split(","))
        total = pack(args.src, args.out, folders, hw, args.quality)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mib = total / 2**20
    print(f"packed {len(folders)} folders into {args.out}: {mib:.1f} MiB")
    if mib > args.max_mib:
        print(f"error: the pack is {mib:.1f} MiB, over --max-mib {args.max_mib}; lower "
              "--quality or pack fewer folders", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
