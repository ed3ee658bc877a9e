#!/usr/bin/env python3
"""Slim an onnxruntime-gpu wheel to one GPU architecture, to carry it where transfers are small.

    python bench/device/slim_onnxruntime_gpu.py onnxruntime_gpu-1.31.1-...whl --sm 90 --out ort.tar.xz

Why: the CUDA provider library of onnxruntime-gpu 1.31.1 is 284 MB, kernels for six GPU
generations plus the LLM-only contrib kernels (flash attention, MoE GEMMs, ...). The lent GPU
machines reach no package index and take 64 MiB per call, so ``bench/gpu.py`` ran there on this
wheel slimmed to an 18 MB archive: every fatbin entry for another architecture, and every entry whose
kernels all come from LLM-only sources, is zeroed in place (same offsets, so the library still loads;
zeros compress to nothing), the C API library and the Python tools are left out.

Caveat: this edits the undocumented fatbin layout (header magic 0xBA55ED50, entries with kind,
sizes and the SM number at byte 28; payloads zstd-compressed). A kernel that was zeroed and is then
needed fails with "no kernel image"; EfficientNet-Lite0 needs none of them. Not for production.
"""

from __future__ import annotations

import argparse
import io
import re
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import zstandard

MAGIC = 0xBA55ED50
PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
LEFT_OUT = re.compile(r"^onnxruntime/(transformers|tools|quantization)/|libonnxruntime\.so|providers_tensorrt")
LLM_ONLY = re.compile(r"flash|moe|fmha|attention|attn|xqa|gemm|quant|rotary|beam|sampling|bert|gqa|llm|paged|"
                      r"decoder|bits|fp8|fpA|int4|int2|int8|sparse|lean|cutlass|topk|dispatcher|gated_delta|"
                      r"deform|generation|longformer|qordered|bnb4|dropout|ngram|greedy|dynamic_time|"
                      r"embed_layer|gelu|non_max|roialign|grid_sample|fft|rnn|label_encoder|einsum|rms_norm|"
                      r"layer_norm|random")
SOURCE = re.compile(rb"_INTERNAL_[0-9a-f]{8}_\d+_(\w+?)_cu_")


def fatbin_section(lib: Path) -> tuple[int, int]:
    """File offset and size of the library's .nv_fatbin section (readelf)."""
    out = subprocess.run(["readelf", "-SW", str(lib)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if ".nv_fatbin" in line:
            fields = line.split("]")[1].split()
            return int(fields[3], 16), int(fields[4], 16)
    raise SystemExit(f"{lib}: no .nv_fatbin section")


def slim(data: bytearray, offset: int, size: int, sm: int) -> tuple[int, int]:
    """Zero the entries not needed on ``sm`` in place; returns (bytes kept, bytes zeroed)."""
    unzstd = zstandard.ZstdDecompressor()
    kept = zeroed = 0
    pos, end = offset, offset + size
    while pos < end:
        magic, _version, header, fat_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != MAGIC:
            pos += 8
            continue
        entry, stop = pos + header, pos + header + fat_size
        while entry < stop:
            _kind, _ver, entry_header, padded = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            body = slice(entry + entry_header, entry + entry_header + padded)
            drop = arch != sm
            if not drop:
                sources = {m.group(1).decode() for m in SOURCE.finditer(unzstd.decompressobj().decompress(bytes(data[body])))}
                drop = bool(sources) and all(LLM_ONLY.search(s) for s in sources)
            if drop:
                data[body] = bytes(padded)
                zeroed += padded
            else:
                kept += padded
            entry += entry_header + padded
        pos = stop
    return kept, zeroed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path)
    ap.add_argument("--sm", type=int, default=90, help="compute capability to keep, e.g. 90 for H100/H200")
    ap.add_argument("--out", type=Path, default=Path("ort.tar.xz"), help="tar.xz to unpack into a PYTHONPATH folder")
    args = ap.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel, tarfile.open(args.out, "w:xz") as tar:
        for info in wheel.infolist():
            if info.is_dir() or LEFT_OUT.search(info.filename):
                continue
            data = bytearray(wheel.read(info))
            if info.filename == PROVIDER:
                tmp = args.out.with_suffix(".so")
                tmp.write_bytes(data)
                kept, zeroed = slim(data, *fatbin_section(tmp), args.sm)
                tmp.unlink()
                print(f"{PROVIDER}: kept {kept / 1e6:.1f} MB of kernels, zeroed {zeroed / 1e6:.1f} MB")
            member = tarfile.TarInfo(info.filename)
            member.size, member.mode = len(data), 0o755 if info.filename.endswith(".so") else 0o644
            tar.addfile(member, io.BytesIO(bytes(data)))
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
