"""Generated training images: local or Hub .npz files, memory-mapped, read batch by batch.

The format is that of the EDM data of Wang et al. 2023 (Hub dataset
``P2333/DM-Improves-AT``; DDPM data of Rebuffi et al. alike): an .npz holding
``image`` (N, 32, 32, 3) uint8 and ``label`` (N,) integers. ``generated_data``
names one file or several (comma-separated parts, read as one set, e.g. the
20M set's ``20m_part1.npz,20m_part2.npz``), each a local path or
``hf://datasets/OWNER/NAME/PATH.npz[@REVISION]``, downloaded through
huggingface_hub's cache.

An uncompressed .npz member is a .npy file stored as is inside the zip, so
the arrays are mapped straight from the file (the offset read from the zip's
local header) and a batch reads only its own images; compressed files are
refused with the command that writes an uncompressed copy once
(:func:`convert`, ``score-train convert-generated``).
"""

from __future__ import annotations

import mmap
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import DataError
from zoo.fileio import atomic_path, sha256_file

HUB_PREFIX = "hf://datasets/"
IMAGE_SHAPE = (32, 32, 3)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header (30 bytes)
_CHUNK = 1 << 16  # images per chunk when scanning or copying
# Images read between two releases of the mapped pages: a page fault maps the whole page-cache folio around it
# (up to 2 MB on recent kernels), so a batch of random images read at once would map most of the file.
_TAKE_CHUNK = 64


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub dataset: ``hf://datasets/OWNER/NAME/PATH[@REVISION]``."""

    repo_id: str
    filename: str
    revision: str | None


def parse_reference(reference: str) -> HubFile | None:
    """The Hub file a reference names, or None for a local path."""
    if not reference.startswith(HUB_PREFIX):
        return None
    match = re.fullmatch(r"([^/@]+/[^/@]+)/([^@]+?)(?:@([^@/]+))?", reference[len(HUB_PREFIX):])
    if match is None:
        raise DataError(f"{reference!r} is not a Hub file reference; write hf://datasets/OWNER/NAME/PATH.npz[@REVISION]")
    return HubFile(*match.groups())


def split_references(spec: str) -> list[str]:
    """The references of a ``generated_data`` value (comma-separated parts)."""
    return [part.strip() for part in spec.split(",") if part.strip()]


def fetch(reference: str) -> tuple[Path, dict]:
    """Local path of a reference (a Hub file is downloaded into the cache) and where it came from."""
    hub_file = parse_reference(reference)
    if hub_file is None:
        path = Path(reference).expanduser()
        if not path.is_file():
            raise DataError(f"generated data file {path} does not exist")
        return path, {"reference": reference}
    from zoo.sources.hub import download_file

    local = Path(download_file(hub_file.repo_id, hub_file.filename, hub_file.revision or "main", repo_type="dataset"))
    parts = local.parts
    commit = parts[len(parts) - len(Path(hub_file.filename).parts) - 1]  # .../snapshots/<commit>/<filename>
    return local, {"reference": reference, "repo_id": hub_file.repo_id, "filename": hub_file.filename,
                   "revision": commit}


def _member(zf: zipfile.ZipFile, path: Path, name: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(f"{name}.npy")
    except KeyError:
        raise DataError(f"{path} has arrays {sorted(n.removesuffix('.npy') for n in zf.namelist())}; "
                        "generated data needs 'image' and 'label'") from None


def _open_member(path: Path, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, byte offset of the data) of the uncompressed .npy member ``name`` of an .npz."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = _member(zf, path, name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise DataError(f"{path} is a compressed .npz, which cannot be memory-mapped; write an uncompressed "
                            f"copy once: score-train convert-generated {path} OUT.npz")
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                raise ValueError("bad zip local header")
            f.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
            dtype, shape = _read_npy_header(f, f"{path}: '{name}'")
            offset = f.tell()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error) as e:
        raise DataError(f"{path} is not a readable .npz file, truncated or damaged ({' '.join(str(e).split())}); "
                        "download or copy it again") from None
    if offset + int(np.prod(shape)) * dtype.itemsize > path.stat().st_size:
        raise DataError(f"{path} is truncated ('{name}' needs {int(np.prod(shape)) * dtype.itemsize} bytes); "
                        "download or copy it again")
    return dtype, shape, offset


class _Part:
    """One memory-mapped .npz: its ``image`` and ``label`` arrays, read-only views of the file."""

    def __init__(self, path: Path, dataset: str):
        (idt, ishape, ioff), (ldt, lshape, loff) = _open_member(path, "image"), _open_member(path, "label")
        if idt != np.uint8 or len(ishape) != 4 or ishape[1:] != IMAGE_SHAPE:
            raise DataError(f"{path}: 'image' must be uint8 of shape (N,32,32,3), got {idt} {ishape}")
        if len(lshape) != 1 or lshape[0] != ishape[0]:
            raise DataError(f"{path}: 'label' must have shape ({ishape[0]},), got {lshape}")
        if not np.issubdtype(ldt, np.integer):
            raise DataError(f"{path}: 'label' must hold integers, got {ldt}")
        if ishape[0] == 0:
            raise DataError(f"{path} holds no images")
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._map.madvise(mmap.MADV_RANDOM)  # no read-ahead around each image
        self.images = np.ndarray(ishape, idt, buffer=self._map, offset=ioff)
        self.labels = np.ndarray(lshape, ldt, buffer=self._map, offset=loff)
        k = NUM_CLASSES[dataset]
        for i in range(0, len(self.labels), _CHUNK * 16):
            chunk = self.labels[i:i + _CHUNK * 16]
            if chunk.min() < 0 or chunk.max() >= k:
                raise DataError(f"{path}: labels must lie in 0..{k - 1} for {dataset}, "
                                f"found {chunk.min()}..{chunk.max()}")
        self.release()

    def release(self) -> None:
        """Unmap the pages this process has touched (they stay in the page cache): resident memory stays small."""
        self._map.madvise(mmap.MADV_DONTNEED)


class GeneratedData:
    """Generated images of one or more .npz parts, indexed as one set; :meth:`take` reads only the images asked for."""

    def __init__(self, parts: list[_Part], sources: list[dict]):
        self.parts, self.sources = parts, sources
        self.bounds = np.cumsum([0] + [len(p.labels) for p in parts])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (uint8 NHWC) and labels (int64) at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        x = np.empty((len(indices), *IMAGE_SHAPE), np.uint8)
        y = np.empty(len(indices), np.int64)
        which = np.searchsorted(self.bounds, indices, side="right") - 1
        for i, part in enumerate(self.parts):
            pos = np.flatnonzero(which == i)
            pos = pos[np.argsort(indices[pos], kind="stable")]  # read each part in file order
            for chunk in np.array_split(pos, -(-len(pos) // _TAKE_CHUNK)) if len(pos) else ():
                local = indices[chunk] - self.bounds[i]
                x[chunk], y[chunk] = part.images[local], part.labels[local]
                part.release()
        return torch.from_numpy(x), torch.from_numpy(y)

    def provenance(self) -> list[dict]:
        """Each part's reference, Hub revision (the resolved commit) and sha256, for run_info.json."""
        return [{**s, "images": len(p.labels), "sha256": sha256_file(s["path"])} for s, p in zip(self.sources, self.parts)]


def load_generated(spec: str, dataset: str) -> GeneratedData:
    """Open the generated data ``spec`` names (paths or hf:// references, comma-separated), memory-mapped."""
    parts, sources = [], []
    for reference in split_references(spec):
        path, source = fetch(reference)
        parts.append(_Part(path, dataset))
        sources.append({**source, "path": str(path.resolve())})
    if not parts:
        raise DataError(f"generated_data {spec!r} names no file")
    return GeneratedData(parts, sources)


def _read_npy_header(f, where: str) -> tuple[np.dtype, tuple[int, ...]]:
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if fortran and len(shape) > 1:
        raise DataError(f"{where} is stored in Fortran order; save a C-order copy with numpy")
    return dtype, shape


def convert(inputs: list[str], out: str | Path, progress: bool = True) -> Path:
    """Write the ``image`` and ``label`` arrays of ``inputs`` (compressed or not, concatenated) as one
    uncompressed .npz at ``out``, streaming: memory use does not grow with the files."""
    paths = [fetch(ref)[0] for ref in inputs]
    headers: dict[str, list] = {"image": [], "label": []}
    try:
        for path in paths:
            with zipfile.ZipFile(path) as zf:
                for name in headers:
                    with zf.open(_member(zf, path, name)) as f:
                        headers[name].append(_read_npy_header(f, f"{path}:{name}"))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read the generated data ({' '.join(str(e).split())})") from None
    total = sum(shape[0] for _, shape in headers["image"])
    out = Path(out)
    try:
        _write_uncompressed(paths, headers, total, out, progress)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise DataError(f"cannot read the generated data ({' '.join(str(e).split())}); nothing was written") from None
    return out


def _write_uncompressed(paths: list[Path], headers: dict[str, list], total: int, out: Path, progress: bool) -> None:
    from tqdm import tqdm

    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zout, \
            tqdm(total=2 * total, unit="rows", desc=f"writing {out.name}", disable=not progress) as bar:
        for name, parts in headers.items():
            dtype, shape = parts[0][0], (total, *parts[0][1][1:])
            if any(d != dtype or s[1:] != shape[1:] for d, s in parts):
                raise DataError(f"the inputs' '{name}' arrays differ in dtype or shape: {parts}")
            with zout.open(f"{name}.npy", "w", force_zip64=True) as dst:
                np.lib.format.write_array_header_2_0(
                    dst, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
                row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
                for path, (_, part_shape) in zip(paths, parts):
                    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as src:
                        _read_npy_header(src, str(path))
                        for start in range(0, part_shape[0], _CHUNK):
                            n = min(_CHUNK, part_shape[0] - start)
                            data = src.read(n * row)
                            if len(data) != n * row:
                                raise DataError(f"{path} is truncated in '{name}'; download or copy it again")
                            dst.write(data)
                            bar.update(n)
