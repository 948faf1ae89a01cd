"""Move a model folder or a ``finetune`` run folder to and from the lent GPU machine.

The device tool carries at most 64 MiB each way, and brings back files of at most 16 MiB.
MiniLM's weights are 91 MB in fp32, so this packs a folder as one tar in which every float32
``.safetensors`` file is stored in fp16 (half the bytes), split into parts of ``--part-mib``:

    python scripts/ship_model.py pack SRC_DIR DEST_DIR [--part-mib 15]   # DEST_DIR/model.tar.partNN
    python scripts/ship_model.py unpack DEST_DIR OUT_DIR                  # fp32 again

The trip rounds each weight to fp16 (11 significant bits; relative error at most 2^-11).
``unpack`` writes the weights back as float32 and, for a run folder, records the round trip in
``tweetheads_run.json`` (``"weights_roundtrip": "fp16"``) and refreshes its file checksums, so the
run loads as what it now is. Benchmarks that use a shipped model say so next to their figures.
Only tensors and JSON travel (safetensors and tar): nothing is unpickled.
"""
from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

MANIFEST = "ship_manifest.json"


def _tensors_fp16(path: Path) -> tuple[bytes, list[str]]:
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(str(path))
    halved = [name for name, t in tensors.items() if t.dtype == torch.float32]
    out = {name: (t.half() if t.dtype == torch.float32 else t).contiguous() for name, t in tensors.items()}
    return save(out), halved


def pack(src: Path, dest: Path, part_mib: float) -> list[Path]:
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise SystemExit(f"{src}: not a folder; expected a model folder or a finetune run folder")
    dest.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    manifest: dict[str, list[str]] = {}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            if rel.startswith(("checkpoint/", "checkpoint.old/")):
                continue  # optimizer state: not needed to use the model
            data = path.read_bytes()
            if path.suffix == ".safetensors":
                data, halved = _tensors_fp16(path)
                manifest[rel] = halved
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        blob = json.dumps({"fp16": manifest}).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    data, size = buffer.getvalue(), int(part_mib * 2**20)
    parts = []
    for i in range(0, len(data), size):
        part = dest / f"model.tar.part{i // size:02d}"
        part.write_bytes(data[i:i + size])
        parts.append(part)
    print(f"packed {src} into {len(parts)} part(s) of at most {part_mib} MiB in {dest} ({len(data) / 2**20:.1f} MiB)")
    return parts


def unpack(src: Path, out: Path) -> Path:
    import torch
    from safetensors.torch import load, save_file

    parts = sorted((p for p in Path(src).glob("model.tar.part*") if p.name[len("model.tar.part"):].isdigit()),
                   key=lambda p: int(p.name[len("model.tar.part"):]))  # numerically: part100 after part99
    if not parts:
        raise SystemExit(f"{src}: no model.tar.partNN files; pack a folder first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts)), mode="r")
        members = {m.name: m for m in tar.getmembers()}
    except (tarfile.TarError, EOFError) as exc:
        raise SystemExit(f"{src}: the parts are incomplete or damaged ({exc}); copy every model.tar.partNN again")
    with tar:
        if MANIFEST not in members:
            raise SystemExit(f"{src}: the tar holds no {MANIFEST}; its parts are incomplete or not from pack")
        manifest = json.loads(tar.extractfile(members[MANIFEST]).read())["fp16"]
        for name, member in members.items():
            if name == MANIFEST:
                continue
            if not member.isfile() or name.startswith("/") or ".." in Path(name).parts:
                raise SystemExit(f"{src}: refusing tar member {name!r} (only plain relative files are packed)")
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()
            if name in manifest:
                tensors = load(data)
                restored = {k: (v.float() if k in manifest[name] else v).contiguous() for k, v in tensors.items()}
                save_file(restored, str(target))
            else:
                target.write_bytes(data)
    marker = out / "tweetheads_run.json"
    if marker.exists():
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from embed.runs import artifact_digests

        info = json.loads(marker.read_text())
        info["weights_roundtrip"] = "fp16"
        info["files"] = artifact_digests(out)
        marker.write_text(json.dumps(info, indent=2) + "\n")
    print(f"unpacked {len(parts)} part(s) into {out} (float32 weights rounded through fp16: "
          f"{sum(len(v) for v in manifest.values())} tensors)")
    _ = torch  # imported for safetensors' torch backend
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="SRC_DIR -> DEST_DIR/model.tar.partNN (fp16 weights)")
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--part-mib", type=float, default=15.0)
    u = sub.add_parser("unpack", help="DEST_DIR/model.tar.partNN -> OUT_DIR (fp32 weights)")
    u.add_argument("src", type=Path)
    u.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.src, args.dest, args.part_mib)
    else:
        unpack(args.src, args.out)


if __name__ == "__main__":
    main()
