"""Fuzz dataset=folder with image files from the wild: every PNG colour type and bit depth, JPEG's modes, sizes
from 1 pixel to very long and thin, truncated and damaged files, misnamed files, and the file system's tricks
(symbolic links, broken ones and loops, folders named like images, hidden and oddly named files).

    python scripts/fuzz_folder.py --n 500            # counts of each outcome, and every bad case
    python scripts/fuzz_folder.py --n 20 --seed 3    # the same folders for the same seed

A case is one generated folder, loaded as gan-train does (gan_cli.data.folder.folder: held in memory, then
streamed) at a small resolution. Every intact file has one known colour, so the pixels it must give are known. An
outcome is one of:

    ok         the folder loads, its images have the resolution and channels, and each intact file reads as
               its colour (16-bit samples scaled by their depth, never clipped to white)
    error      no file of the folder can be read and the error is one line (UserError) naming dataset.root
    wrong      an intact file reads as other pixels, a folder with intact files is refused, or a shape is off
    traceback  any other exception
    slow       one file took more than --budget seconds to read (a decode that scales with a bomb's size)
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import struct
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# PNG colour types: (channels in the file, has alpha); 0 gray, 2 RGB, 4 gray + alpha, 6 RGBA
PNG_TYPES = {0: (1, False), 2: (3, False), 4: (2, True), 6: (4, True)}
DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 4: (8, 16), 6: (8, 16)}
SIDES = (1, 2, 3, 7, 16, 33, 120)
DAMAGE = ("none", "none", "none", "truncated", "empty", "garbage", "text", "header_only")


def png(width: int, height: int, depth: int, color_type: int, value: int) -> bytes:
    """A PNG of one colour: every sample ``value`` (alpha opaque), written by hand so that every depth exists."""
    samples, alpha = PNG_TYPES[color_type]
    top = 2 ** depth - 1
    pixel = [value] * (samples - 1 if alpha else samples) + ([top] if alpha else [])
    if depth < 8:  # packed, most significant bits first
        bits = "".join(format(value, f"0{depth}b") for _ in range(width))
        bits += "0" * (-len(bits) % 8)
        row = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    else:
        row = np.array(pixel * width, dtype=">u2" if depth == 16 else "u1").tobytes()
    raw = b"".join(b"\x00" + row for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg(width: int, height: int, mode: str, value: int) -> bytes:
    import io

    from PIL import Image
    colour = value if mode == "L" else (value,) * len(mode)
    out = io.BytesIO()
    Image.new(mode, (width, height), colour).save(out, "JPEG", quality=95)
    return out.getvalue()


@st.composite
def image_file(draw) -> Dict[str, object]:
    """One file: its bytes, the gray level in [0, 1] it must read as (None: damaged or not comparable)."""
    long_thin = draw(st.sampled_from([None, None, (1, 600_000), (300_000, 2)]))
    w, h = long_thin or (draw(st.sampled_from(SIDES)), draw(st.sampled_from(SIDES)))
    if draw(st.booleans()):
        color_type, depth = draw(st.sampled_from([(t, d) for t in sorted(PNG_TYPES) for d in DEPTHS[t]]))
        value = draw(st.integers(0, 2 ** depth - 1))
        data, level, suffix = png(w, h, depth, color_type, value), value / (2 ** depth - 1), ".png"
    else:
        mode = draw(st.sampled_from(["L", "RGB", "CMYK"]))
        value = draw(st.integers(0, 255))
        w, h = min(w, 4000), min(h, 4000)  # JPEG's limit is 65,535 a side
        data, level, suffix = jpeg(w, h, mode, value), (None if mode == "CMYK" else value / 255), ".jpg"
    damage = draw(st.sampled_from(DAMAGE))
    if damage == "truncated":
        data = data[:max(1, int(len(data) * draw(st.floats(0.05, 0.9))))]
    elif damage == "empty":
        data = b""
    elif damage == "garbage":
        data = bytes(draw(st.lists(st.integers(0, 255), min_size=1, max_size=64)))
    elif damage == "text":
        data = b"not an image\n"
    elif damage == "header_only":
        data = data[:33]
    if draw(st.booleans()) and damage == "none":  # a PNG named .jpg or the other way round, or upper case
        suffix = draw(st.sampled_from([".jpeg", ".JPG", ".PNG", {".png": ".jpg", ".jpg": ".png"}[suffix]]))
    return {"data": data, "level": level if damage == "none" else None, "suffix": suffix, "size": (w, h)}


TRICKS = ("link_to_file", "broken_link", "loop", "folder_named_png", "hidden", "odd_name", "empty_subfolder", "fifo")


@st.composite
def folder_case(draw) -> Dict[str, object]:
    return {"files": draw(st.lists(image_file(), min_size=0, max_size=6)),
            "tricks": draw(st.lists(st.sampled_from(TRICKS), max_size=3, unique=True)),
            "channels": draw(st.sampled_from([None, 1, 3])), "resolution": draw(st.sampled_from([8, 16, 28]))}


def write(case: Dict[str, object], root: Path) -> List[Tuple[Path, float]]:
    """The case's folder under ``root``; returns the intact files and their gray level."""
    root.mkdir(parents=True, exist_ok=True)
    intact = []
    for i, f in enumerate(case["files"]):
        path = root / (f"sub{i % 2}" if i % 3 == 0 else "") / f"{i}{f['suffix']}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f["data"])
        if f["level"] is not None:
            intact.append((path, f["level"]))
    for trick in case["tricks"]:
        if trick == "link_to_file" and intact:
            os.symlink(intact[0][0], root / "linked.png")
        elif trick == "broken_link":
            os.symlink(root / "nowhere.png", root / "broken.png")
        elif trick == "loop":
            os.symlink(root, root / "loop")
        elif trick == "folder_named_png":
            (root / "folder.png").mkdir()
        elif trick == "hidden":
            (root / ".hidden.png").write_bytes(b"\x89PNG")
        elif trick == "odd_name":
            (root / "ímage with spaces\n.png").write_bytes(png(4, 4, 8, 0, 255))
            intact.append((root / "ímage with spaces\n.png", 1.0))
        elif trick == "empty_subfolder":
            (root / "empty").mkdir()
        elif trick == "fifo" and hasattr(os, "mkfifo"):
            os.mkfifo(root / "pipe.png")
    return intact


def judge(case: Dict[str, object], root: Path, budget: float) -> Tuple[str, str]:
    """(outcome, why) of loading the case's folder as gan-train does."""
    import torch
    from omegaconf import OmegaConf

    from gan_cli.config import UserError
    from gan_cli.data import folder

    intact = write(case, root)
    channels, r = case["channels"], case["resolution"]
    for path, level in intact:  # the known answer of each intact file
        t0 = time.perf_counter()
        x = folder.read_image(str(path), channels or 3, r)
        took = time.perf_counter() - t0
        if took > budget:
            return "slow", f"{path.name}: {took:.1f} s"
        if x.shape != ((channels or 3), r, r) or x.dtype != torch.uint8:
            return "wrong", f"{path.name}: shape {tuple(x.shape)} {x.dtype}"
        if (x.float() / 255 - level).abs().max() > 3 / 255:
            return "wrong", f"{path.name}: reads as {x.float().mean() / 255:.3f}, its colour is {level:.3f}"
    cfg = OmegaConf.create({"name": "folder", "root": str(root), "resolution": r, "channels": channels,
                            "in_memory": "true", "workers": 0})
    for in_memory in ("true", "false"):
        cfg.in_memory = in_memory
        try:
            data = folder.folder(cfg)
        except UserError as err:
            if intact:
                return "wrong", f"in_memory={in_memory}: refused with {len(intact)} intact files: {err}"
            if "\n" in str(err) or f"dataset.root={root}" not in str(err):
                return "wrong", f"an error that is not one line naming dataset.root: {err}"
            return "error", str(err)
        x = data.train if data.train is not None else data.stream.batch(4)
        if x.shape[1:] != (data.shape[0], r, r) or not bool(((x >= 0) & (x <= 1)).all()):
            return "wrong", f"in_memory={in_memory}: images {tuple(x.shape)} with values outside [0, 1]"
    return "ok", ""


def run(n: int, seed: int, budget: float) -> Dict[str, List[str]]:
    """n cases drawn from ``seed``: outcome -> the cases' descriptions."""
    import warnings

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    outcomes: Dict[str, List[str]] = collections.defaultdict(list)

    @seeded(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=folder_case())
    def one(case: Dict[str, object]) -> None:
        with tempfile.TemporaryDirectory(prefix="folder-fuzz-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                outcome, why = judge(case, Path(tmp) / "imgs", budget)
            except Exception:  # noqa: BLE001 (the fuzzer's purpose: any other exception is a finding)
                outcome, why = "traceback", traceback.format_exc(limit=-3)
        outcomes[outcome].append(f"case {sum(map(len, outcomes.values()))}: {why}")

    one()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="folders to try")
    parser.add_argument("--seed", type=int, default=0, help="the same folders for the same seed")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds one file may take to read")
    args = parser.parse_args()
    logging.getLogger("gan_cli").setLevel(logging.ERROR)  # the folder's notes on skipped files: not findings
    outcomes = run(args.n, args.seed, args.budget)
    for outcome in ("ok", "error", "wrong", "traceback", "slow"):
        print(f"{outcome:10s} {len(outcomes.get(outcome, []))}")
    bad = [line for o in ("wrong", "traceback", "slow") for line in outcomes.get(o, [])]
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
