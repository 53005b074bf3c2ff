#!/usr/bin/env bash
# The GPU checks in one command: every CUDA test, then the model and pipeline
# benchmarks of the paper net in fp32, bf16 and fp16, and the ceiling benchmark
# (what the CPUs around the GPU can feed it), each writing its JSON into FOLDER.
#
#   bash scripts/gpu-check.sh FOLDER          (sized for under 8 minutes on one GPU node)
#
# Without CUDA it says so, runs the CPU smoke checks (the paper net's model
# benchmark for a few seconds, a small ceiling run) and exits 0.
set -euo pipefail
out=$(realpath -m "${1:?usage: bash scripts/gpu-check.sh FOLDER}")
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
mkdir -p "$out"
paper=configs/models/unet-paper.yaml

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device here (torch $(python -c 'import torch; print(torch.__version__)')): CPU smoke run only"
    python -m benchmarks.model --config "$paper" --block 388 --tile 572 --seconds 3 > "$out/model-cpu.json"
    python -m benchmarks.ceiling --units 64 --unit 128 --split 16 --raw-seconds 5 --simulate 20 --simulate-units 64 \
        > "$out/ceiling-smoke.json"
    echo "CPU smoke run done: $out"
    exit 0
fi

echo "== CUDA tests"
python -m pytest -q -m "" -k cuda tests/ | tee "$out/cuda-tests.txt"
for precision in fp32 bf16 fp16; do
    echo "== model and pipeline, $precision"
    python -m benchmarks.model --config "$paper" --block 1024 --tile 1024 --batch-size 4 \
        --device cuda --precision "$precision" --seconds 10 > "$out/model-$precision.json"
    python -m benchmarks.pipeline --config "$paper" --images 16 --size 4096 --chunk 1024 --tile 1024 \
        --batch-size 4 --device cuda --precision "$precision" --cpus-per-actor 2 --units-per-task 8 \
        > "$out/pipeline-$precision.json"
done
echo "== ceiling: the pipeline with no arithmetic, and a simulated GPU at the paper net's 100 Mpx/s"
python -m benchmarks.ceiling --units 8192 --io tasks --raw-seconds 20 --split 64 --simulate 100 \
    --simulate-units 4096 > "$out/ceiling.json"
echo "GPU checks done: $out"
