#!/usr/bin/env python3
"""Minimal reader for CTranslate2 `model.bin` files (binary version 6), in plain numpy.

    python3 scripts/ct2.py MODEL.bin        # list header, variables, aliases

Format (all integers little-endian; a "string" is a u16 length that counts a trailing NUL,
then that many bytes, the last of which is NUL):

    u32     binary version (this reader accepts 6)
    string  spec name, e.g. "WhisperSpec"
    u32     spec revision (WhisperSpec: 3)
    u32     variable count
    per variable:
        string  name, e.g. "encoder/layer_0/self_attention/linear_0/weight"
        u8      rank
        u32     dims[rank]             (row-major; rank 0 = scalar)
        u8      dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16
        u32     byte count             (= product(dims) * itemsize)
        bytes   raw data
    u32     alias count
    per alias: string alias, string target   (e.g. decoder/projection/weight ->
                                              decoder/embeddings/weight)

`load(path)` returns (header, dict name -> numpy array, aliases); aliases are resolved into the
dict as extra names for the same array. bf16 is widened to float32. Bad magic/version,
unknown dtypes, size mismatches and truncation raise ValueError with the offset.
"""
import sys

import numpy as np

SUPPORTED_VERSION = 6
DTYPES = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "bf16"}
DTYPE_NAMES = {0: "f32", 1: "i8", 2: "i16", 3: "i32", 4: "f16", 5: "bf16"}


class _Cursor:
    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(
                f"{self.path}: truncated reading {what} at offset {self.pos} "
                f"(need {n} bytes, file has {len(self.buf) - self.pos} left)"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return int.from_bytes(self.take(2, what), "little")

    def u32(self, what):
        return int.from_bytes(self.take(4, what), "little")

    def string(self, what):
        n = self.u16(what + " length")
        if n == 0:
            raise ValueError(f"{self.path}: empty {what} at offset {self.pos - 2}")
        raw = self.take(n, what)
        if raw[-1] != 0:
            raise ValueError(f"{self.path}: {what} at offset {self.pos - n} is not NUL-terminated")
        try:
            return bytes(raw[:-1]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{self.path}: {what} at offset {self.pos - n} is not UTF-8: {e}")


def load(path, with_meta=False, data=None):
    """Read a CT2 model.bin. Returns (header, variables, aliases).

    `data` (bytes), when given, is parsed instead of reading `path` (which then only names
    the source in errors), e.g. the two halves of a split model.bin joined in memory.

    header: {"version", "spec", "revision", "count"}; variables: dict name -> np.ndarray
    (alias names included); aliases: list of (alias, target). With with_meta, also returns
    dict name -> (dtype name, shape, offset) for the stored variables.
    """
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    buf = memoryview(data)
    c = _Cursor(buf, path)
    if len(buf) < 4:
        raise ValueError(f"{path}: too short to be a CTranslate2 model ({len(buf)} bytes)")
    version = c.u32("binary version")
    if version != SUPPORTED_VERSION:
        raise ValueError(
            f"{path}: not a CTranslate2 v{SUPPORTED_VERSION} model.bin "
            f"(first u32 is {version:#x}; expected {SUPPORTED_VERSION})"
        )
    spec = c.string("spec name")
    revision = c.u32("spec revision")
    count = c.u32("variable count")
    if count > 1_000_000:
        raise ValueError(f"{path}: implausible variable count {count}")
    variables, meta = {}, {}
    for i in range(count):
        name = c.string(f"variable {i} name")
        rank = c.u8(f"rank of {name}")
        shape = tuple(c.u32(f"dim of {name}") for _ in range(rank))
        code = c.u8(f"dtype of {name}")
        if code not in DTYPES:
            raise ValueError(f"{path}: {name}: unknown dtype code {code} at offset {c.pos - 1}")
        nbytes = c.u32(f"byte count of {name}")
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        itemsize = 2 if code == 5 else np.dtype(DTYPES[code]).itemsize
        if nbytes != n * itemsize:
            raise ValueError(
                f"{path}: {name}: byte count {nbytes} != {n} elements x {itemsize} bytes"
            )
        offset = c.pos
        raw = c.take(nbytes, f"data of {name}")
        if code == 5:
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, DTYPES[code])
        if name in variables:
            raise ValueError(f"{path}: duplicate variable {name}")
        variables[name] = arr.reshape(shape)
        meta[name] = (DTYPE_NAMES[code], shape, offset)
    n_alias = c.u32("alias count")
    aliases = []
    for i in range(n_alias):
        alias = c.string(f"alias {i}")
        target = c.string(f"alias {i} target")
        if target not in variables:
            raise ValueError(f"{path}: alias {alias} -> unknown variable {target}")
        aliases.append((alias, target))
        variables[alias] = variables[target]
    if c.pos != len(buf):
        raise ValueError(f"{path}: {len(buf) - c.pos} trailing bytes after the alias table")
    header = {"version": version, "spec": spec, "revision": revision, "count": count}
    if with_meta:
        return header, variables, aliases, meta
    return header, variables, aliases


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    try:
        header, variables, aliases, meta = load(sys.argv[1], with_meta=True)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"binary version {header['version']}, spec {header['spec']} "
          f"revision {header['revision']}, {header['count']} variables")
    for name, (dtype, shape, offset) in meta.items():
        arr = variables[name]
        if arr.size <= 4:
            print(f"{name:60s} {dtype:4s} {str(shape):16s} = {arr.ravel().tolist()}")
        else:
            print(f"{name:60s} {dtype:4s} {str(shape):16s} @ {offset}")
    print(f"{len(aliases)} aliases")
    for alias, target in aliases:
        print(f"  {alias} -> {target}")


if __name__ == "__main__":
    main()
