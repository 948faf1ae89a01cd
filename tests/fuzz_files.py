"""Generated hostile input files through the reader and ``score``, seeded: 10,000+ in the recorded run.

    python tests/fuzz_files.py --files 10000 --json fuzz.json   # RELIABILITY.md's figures
    python tests/fuzz_files.py --large                          # the memory cases, each in a fresh process

Every file comes from one of the generators in ``KINDS`` (random bytes, invalid UTF-8 at every
byte position of a template, BOMs, mixed line endings, NULs, unbalanced quotes, quoted newlines,
wide rows, huge and empty fields, a delimiter that changes mid-file, gzip cut mid-stream, Parquet
and JSONL with wrong types and nested values, broken headers), drawn with ``random.Random(seed)``,
so file ``i`` of seed ``s`` is always the same bytes. Each file goes through:

1. the reader (``check_inputs``, then every chunk of ``iter_chunks``): either a ``DataError``
   before any row (a refusal, with a message) or chunks where ``rows_read = good + rejected`` and
   every reject names the file, a line >= 1, a reason and a printable raw text;
2. ``score`` (``score_files`` with the packaged MiniLM, loaded once, and a logistic head): the same
   refusal, or a summary with read = scored + rejected equal to the reader's counts, an output file
   holding exactly the scored rows and a rejects file holding exactly the rejected ones.

Anything else (another exception, a count that differs) is a failure, kept with its traceback.
``--large`` scores the biggest cases (a 200 MB line with no newline, 10^5 columns, a 64 MB field,
a gzip stream that inflates to 200 MB on one line) each in a fresh subprocess and reports its peak
RSS (``VmHWM``), to show memory stays bounded. ``tests/test_reliability.py`` runs the same check on
a few hundred files.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ["debate", "great", "awful", "Trump", "Rubio", "moderators", "#GOPDebate", "lol", "🔥", "naïve", "ok"]
HEADER = ["id", "text", "label"]


def _tweet(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))


def _template(rng: random.Random, rows: int = 4, sep: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(HEADER)
    for i in range(rows):
        writer.writerow([i, _tweet(rng), rng.choice(["Positive", "Negative", "Neutral"])])
    return buffer.getvalue().encode()


TEMPLATE = _template(random.Random(0))  # the fixed file that invalid bytes are put into at every position


def g_random_bytes(rng, i):
    body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 1500)))
    ext = rng.choice(["csv", "tsv", "jsonl"])
    head = {"csv": b"id,text\n", "tsv": b"id\ttext\n", "jsonl": b'{"id": 1, "text": "ok"}\n'}[ext]
    return ext, (head if rng.random() < 0.8 else b"") + body


def g_invalid_utf8(rng, i):
    at = i % (len(TEMPLATE) + 1)
    bad = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f", b"\x80\x80", b"\xfe\xff"])
    return "csv", TEMPLATE[:at] + bad + TEMPLATE[at:]


def g_bom(rng, i):
    boms = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf"]
    data = _template(rng)
    if rng.random() < 0.2:  # the whole file in UTF-16, behind its own BOM
        data = "\ufeff".encode("utf-16") + data.decode().encode("utf-16-le")
    if rng.random() < 0.3:  # a BOM in the middle of the file too
        cut = rng.randrange(len(data))
        data = data[:cut] + rng.choice(boms) + data[cut:]
    return "csv", rng.choice(boms) + data


def g_line_endings(rng, i):
    lines = _template(rng, rows=rng.randint(1, 8)).decode().split("\n")
    return "csv", "".join(line + rng.choice(["\n", "\r\n", "\r", "\n\n", "\r\r\n"]) for line in lines).encode()


def g_nul(rng, i):
    data = bytearray(_template(rng))
    for _ in range(rng.randint(1, 3)):
        data.insert(rng.randrange(len(data) + 1), 0)
    return rng.choice(["csv", "tsv"]), bytes(data)


def g_quotes(rng, i):
    data = bytearray(_template(rng, rows=rng.randint(2, 6)))
    for _ in range(rng.randint(1, 4)):
        data.insert(rng.randrange(len(data) + 1), ord('"'))
    return "csv", bytes(data)


def g_quoted_newlines(rng, i):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=rng.choice(["\n", "\r\n"]))
    writer.writerow(HEADER)
    for j in range(rng.randint(1, 6)):
        text = rng.choice(["\n", "\r\n", "\r", "\n\n", ' "" ']).join(_tweet(rng) for _ in range(rng.randint(1, 3)))
        writer.writerow([j, text, "Neutral"])
    return "csv", buffer.getvalue().encode()


def g_wide(rng, i):
    width = rng.choice([3, 50, 500, 3000])
    names = ["text"] + [f"c{k}" for k in range(width - 1)]
    rows = [",".join(names)]
    for _ in range(rng.randint(1, 4)):
        cells = [_tweet(rng)] + ["x"] * (width - 1 + rng.choice([0, 0, 1, -1]))
        rows.append(",".join(cells))
    return "csv", ("\n".join(rows) + "\n").encode()


def g_fields(rng, i):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for j in range(rng.randint(1, 5)):
        size = rng.choice([0, 0, 1, 100, 10_000, 300_000])
        text = ("a" * size) if rng.random() < 0.5 else " " * size
        writer.writerow([rng.choice([j, ""]), text, rng.choice(["", "Neutral"])])
    return "csv", buffer.getvalue().encode()


def g_delimiter_change(rng, i):
    first, then = rng.sample([",", "\t", ";", "|"], 2)
    a = _template(rng, rows=rng.randint(1, 4), sep=first)
    b = _template(rng, rows=rng.randint(1, 4), sep=then).split(b"\n", 1)[1]
    return ("tsv" if first == "\t" else "csv"), a + b


def g_gzip(rng, i):
    inner = _template(rng, rows=rng.randint(5, 40))
    packed = gzip.compress(inner, mtime=0)
    choice = rng.random()
    if choice < 0.6:
        packed = packed[: rng.randrange(1, len(packed))]  # cut mid-stream
    elif choice < 0.8:
        packed += bytes(rng.randrange(256) for _ in range(rng.randint(1, 50)))  # garbage after the stream
    else:
        packed += gzip.compress(_template(rng).split(b"\n", 1)[1], mtime=0)  # a second member
    return "csv.gz", packed


def g_parquet(rng, i):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = rng.randint(0, 6)
    kind = rng.choice(["string", "int", "float", "list", "struct", "binary", "null", "mixed_nulls", "bool"])
    values = {
        "string": [_tweet(rng) for _ in range(n)],
        "int": [rng.randrange(-10**12, 10**12) for _ in range(n)],
        "float": [rng.random() for _ in range(n)],
        "list": [[_tweet(rng)] for _ in range(n)],
        "struct": [{"a": _tweet(rng), "b": {"c": 1}} for _ in range(n)],
        "binary": [bytes(rng.randrange(256) for _ in range(8)) for _ in range(n)],
        "null": [None] * n,
        "mixed_nulls": [rng.choice([None, "", "  ", _tweet(rng), "nul\x00"]) for _ in range(n)],
        "bool": [rng.random() < 0.5 for _ in range(n)],
    }[kind]
    columns = {"id": list(range(n)), "text": values if kind != "null" else pa.array(values, pa.null()),
               "nested": [{"x": [1, 2], "y": None} for _ in range(n)]}
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return "parquet", buffer.getvalue()


def g_jsonl(rng, i):
    lines = []
    keys = ["id", "text", "meta"]
    for j in range(rng.randint(1, 8)):
        text = rng.choice([_tweet(rng), 5, 2.5, True, None, [], ["a"], {"t": "x"}, "", "\ud800", "nul\x00",
                           10**30])
        record = {"id": j, "text": text, "meta": rng.choice([{"a": [1, {"b": None}]}, [1, 2], None, "s"])}
        if rng.random() < 0.15:
            record.pop(rng.choice(keys))
        if rng.random() < 0.1:
            record["extra"] = 1
        line = json.dumps(record, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.1:
            line = rng.choice(["[1, 2]", "null", '"just a string"', line[:-1], line + ",", "{" * 50])
        lines.append(line)
    return "jsonl", ("\n".join(lines) + rng.choice(["\n", "", "\r\n"])).encode("utf-8", "surrogatepass")


def g_headers(rng, i):
    return "csv", rng.choice([b"", b"\n\n\n", b"id,text\n", b"text,text\nx,y\n", b"id,body\n1,hello\n",
                              b"id,text\n\n\n", b",,\n,,\n", b'"text\n1\n', b"text\n" + b" \n" * 5,
                              b"\xef\xbb\xbftext\nhi\n", b"id;text\n1;hi\n"])


KINDS = {name[2:]: fn for name, fn in globals().items() if name.startswith("g_")}


def generate(seed: int, i: int, folder: Path) -> tuple[str, Path]:
    rng = random.Random(seed * 1_000_003 + i)
    kind = sorted(KINDS)[i % len(KINDS)]
    ext, data = KINDS[kind](rng, i // len(KINDS))
    path = folder / f"f{i:05d}-{kind}.{ext}"
    path.write_bytes(data)
    return kind, path


# -- the checks ----------------------------------------------------------------------------------
def read_all(path: Path, chunk_rows: int) -> tuple[int, int, int] | str:
    """The reader's (read, good, rejected), or the refusal's message; raises on a broken invariant."""
    from embed.errors import DataError
    from scoring.reader import check_inputs, iter_chunks

    try:
        check_inputs([path], "text")
    except DataError as exc:
        message = str(exc)
        assert message.strip() and str(path) in message, f"refusal without the file's name: {message!r}"
        return message
    read = good = bad = 0
    for chunk in iter_chunks([path], "text", chunk_rows):
        assert chunk.rows_read == len(chunk.rows) + len(chunk.rejects), "rows_read != good + rejected"
        assert all(isinstance(t, str) and t.strip() for t in chunk.texts), "a good row with no text"
        for reject in chunk.rejects:
            assert reject.file == path and reject.line >= 1 and reject.reason, f"bad reject {reject}"
            assert isinstance(reject.raw, str) and "\x00" not in reject.raw
            reject.raw.encode("utf-8")  # printable into a UTF-8 CSV: no lone surrogate left
        read, good, bad = read + chunk.rows_read, good + len(chunk.rows), bad + len(chunk.rejects)
    return read, good, bad


def score_one(path: Path, out: Path, embedder, head: Path, chunk_rows: int) -> tuple[int, int, int] | str:
    from embed.errors import TweetheadsError
    from scoring.score import ScoreConfig, score_files

    try:
        summary = score_files([path], out, embedder, head, ScoreConfig(chunk_rows=chunk_rows))
    except TweetheadsError as exc:
        return str(exc)
    assert summary.rows_read == summary.rows_scored + summary.rows_rejected
    csv.field_size_limit(1 << 30)
    with open(out, newline="", encoding="utf-8") as handle:
        written = sum(1 for _ in csv.reader(handle)) - 1
    with open(summary.rejects, newline="", encoding="utf-8") as handle:
        rejected = sum(1 for _ in csv.reader(handle)) - 1
    assert written == summary.rows_scored, f"output holds {written} rows, summary says {summary.rows_scored}"
    assert rejected == summary.rows_rejected, f"rejects file holds {rejected}, summary says {summary.rows_rejected}"
    return summary.rows_read, summary.rows_scored, summary.rows_rejected


def make_head(folder: Path, embedder) -> Path:
    from heads import get_head

    with open(REPO / "embed" / "samples" / "tweets.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    vectors, _ = embedder.embed([r["text"] for r in rows])
    encoder = embedder.load()
    get_head("logistic", C=1.0).fit(vectors, [r["label"] for r in rows]).save(
        folder / "head", fingerprint=encoder.fingerprint, model=encoder.description)
    return folder / "head"


def fuzz(files: int, seed: int = 0, embedder=None, work: Path | None = None, progress: bool = False) -> dict:
    """Generate and check ``files`` files; a dict of counts, per-kind figures and failures."""
    from embed.encoder import Embedder

    work = Path(work or tempfile.mkdtemp(prefix="tweetheads-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    embedder = embedder or Embedder("minilm", cache_dir=work / "cache")
    head = make_head(work, embedder)
    stats = {"files": 0, "refused": 0, "scored": 0, "rows_read": 0, "rows_scored": 0, "rows_rejected": 0,
             "failures": [], "kinds": Counter(), "reasons": Counter(), "largest_file": 0, "seconds": 0.0}
    started = time.perf_counter()
    for i in range(files):
        kind, path = generate(seed, i, work)
        chunk_rows = 1 + (i * 7) % 5
        stats["files"] += 1
        stats["kinds"][kind] += 1
        stats["largest_file"] = max(stats["largest_file"], path.stat().st_size)
        out = work / f"out-{i}.csv"
        try:
            read = read_all(path, chunk_rows)
            scored = score_one(path, out, embedder, head, chunk_rows)
            if isinstance(read, str) or isinstance(scored, str):
                assert isinstance(read, str) == isinstance(scored, str), f"reader {read!r} but score {scored!r}"
                stats["refused"] += 1
                stats["reasons"]["refused: " + read.split(": ", 1)[-1][:40]] += 1
            else:
                assert read == scored, f"reader counted {read}, score {scored}"
                stats["scored"] += 1
                for key, value in zip(("rows_read", "rows_scored", "rows_rejected"), scored):
                    stats[key] += value
                _count_reasons(work / f"out-{i}.rejects.csv", stats["reasons"])
        except Exception:  # noqa: BLE001  every other outcome is a failure to report
            stats["failures"].append({"file": str(path), "kind": kind, "traceback": traceback.format_exc()})
            shutil.copy(path, work / f"FAILED-{path.name}")
        finally:
            for leftover in (path, out, work / f"out-{i}.rejects.csv"):
                leftover.unlink(missing_ok=True)
        if progress and (i + 1) % 500 == 0:
            print(f"{i + 1} files, {len(stats['failures'])} failures, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    stats["seconds"] = time.perf_counter() - started
    return stats


def _count_reasons(rejects: Path, reasons: Counter) -> None:
    with open(rejects, newline="", encoding="utf-8") as handle:
        for row in list(csv.reader(handle))[1:]:
            reasons[row[2].split(":")[0][:40]] += 1


# -- the memory cases ----------------------------------------------------------------------------
LARGE = {
    "200 MB line, no newline (CSV)": ("csv", lambda f: _write_line(f, b"id,text\n1,", 200)),
    "200 MB line, no newline (JSONL)": ("jsonl", lambda f: _write_line(f, b'{"id": 1, "text": "', 200)),
    "10^5 columns, 3 rows": ("csv", lambda f: f.write_bytes(
        ("\n".join([",".join(["text"] + [f"c{k}" for k in range(99_999)])]
                   + [",".join(["hello"] + ["x"] * 99_999)] * 3) + "\n").encode())),
    "64 MB quoted field, then 1,000 rows": ("csv", lambda f: f.write_bytes(
        b'id,text\n1,"' + b"a" * (64 << 20) + b'"\n' + b"".join(b"%d,tweet %d\n" % (k, k) for k in range(1000)))),
    "gzip inflating to one 200 MB line": ("csv.gz", lambda f: _write_gz_line(f, 200)),
}


def _write_line(path: Path, head: bytes, mib: int) -> None:
    with open(path, "wb") as handle:
        handle.write(head)
        block = b"x" * (1 << 20)
        for _ in range(mib):
            handle.write(block)


def _write_gz_line(path: Path, mib: int) -> None:
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(b"id,text\n1,")
        block = b"x" * (1 << 20)
        for _ in range(mib):
            handle.write(block)


def large_child(spec: dict) -> None:
    """Score one large file in this fresh process; print its counts and peak RSS as JSON."""
    from embed.encoder import Embedder

    sys.path.insert(0, str(REPO / "tests"))
    embedder = Embedder("minilm", cache_dir=spec["cache"])
    embedder.load()
    baseline = _peak_rss_mib()
    started = time.perf_counter()
    read = read_all(Path(spec["path"]), 4096)
    scored = score_one(Path(spec["path"]), Path(spec["out"]), embedder, Path(spec["head"]), 4096)
    print(json.dumps({"read": read, "scored": scored, "seconds": time.perf_counter() - started,
                      "rss_after_model_mib": baseline, "peak_rss_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def large(work: Path) -> list[dict]:
    from embed.encoder import Embedder

    work.mkdir(parents=True, exist_ok=True)
    head = make_head(work, Embedder("minilm", cache_dir=work / "cache"))
    results = []
    for name, (ext, write) in LARGE.items():
        path = work / f"large.{ext}"
        write(path)
        spec = {"path": str(path), "out": str(work / "large-out.csv"), "head": str(head), "cache": str(work / "cache")}
        done = subprocess.run([sys.executable, __file__, "--large-child", json.dumps(spec)], capture_output=True,
                              text=True, cwd=REPO)
        if done.returncode:
            results.append({"case": name, "error": done.stderr[-3000:]})
        else:
            results.append({"case": name, "bytes": path.stat().st_size, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        path.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures (and every failure) here")
    parser.add_argument("--large", action="store_true", help="the memory cases instead")
    parser.add_argument("--large-child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.large_child:
        return large_child(json.loads(args.large_child))
    work = args.work or Path(tempfile.mkdtemp(prefix="tweetheads-fuzz-"))
    if args.large:
        result = {"large": large(work)}
    else:
        result = fuzz(args.files, args.seed, work=work, progress=True)
        result["kinds"], result["reasons"] = dict(result["kinds"]), dict(result["reasons"].most_common())
        print(json.dumps({k: v for k, v in result.items() if k != "failures"}, indent=1))
        for failure in result["failures"][:5]:
            print(failure["file"], failure["traceback"], file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    if not args.large and result["failures"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
