#!/usr/bin/env bash
# The GPU checks and figures in one run, for a machine with an NVIDIA GPU whose python3 already has
# torch, torchvision, tensorboard, rich, scipy, scikit-learn and matplotlib but not Hydra (and no
# network): the tests that need a GPU, 64 ring members as one population, the steady-state speed of
# the paper's networks (eager, bf16, CUDA graphs), and gan-train against the hand-written loop for
# the paper's networks on MNIST and for arch=dcgan on CIFAR-shaped images. Every result goes under
# $OUT (default gpu_out/).
#
#   bash scripts/gpu_check.sh --prepare [MNIST_ROOT]   # here, where pip works: wheels into .whl/,
#                                                      # MNIST's raw files into .mnist/ (both git-ignored)
#   bash scripts/gpu_check.sh                          # there, with .whl and .mnist beside the code
#
# It takes about 10-12 minutes on one H100/H200-class GPU; each step has its own time limit, so one
# that hangs costs only its share.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu_out}

if [ "${1:-}" = "--prepare" ]; then
    root=${2:-../shared/data}
    mkdir -p .whl .mnist/MNIST/raw
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.mnist/\n/gpu_out/\n' >> .git/info/exclude
    # the versions this environment runs (PYTHON: its interpreter); all three are pure Python
    pins=$("$PY" -c 'import importlib.metadata as m; print(*(f"{p}=={m.version(p)}" for p in ("hydra-core", "omegaconf", "antlr4-python3-runtime")))') || exit 1
    rm -f .whl/*.whl
    for pin in $pins; do  # antlr4-python3-runtime is published as source only: pip wheel builds it
        "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "$pin" 2>/dev/null || "$PY" -m pip wheel -q --no-deps -w .whl "$pin" || exit 1
    done
    cp "$root"/MNIST/raw/*-ubyte .mnist/MNIST/raw/ || exit 1
    du -sh .whl .mnist
    exit 0
fi

mkdir -p "$OUT"
rm -f "$OUT/summary.txt"
step() {  # step NAME SECONDS COMMAND...: its output into $OUT/NAME.txt, its exit status on one line
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $? in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

export PYTHONUNBUFFERED=1
# Hydra's wheels into a folder of their own, gan_cli from this checkout (no build backend needed):
# bench.py then starts gan-train as `python -m gan_cli`
"$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gan-site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/gan-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L > "$OUT/device.txt" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" >> "$OUT/device.txt"

step test_gpu 300 "$PY" -m pytest -q tests/test_gpu.py
# 64 ring members as one population against one run and two side by side (member-iterations per second of
# training, metrics.json's perf/steps_per_s; evaluations only at the start and the end, with fewer theory samples, so
# that the step stays short: they are not part of the rate)
step population_ring 420 "$PY" scripts/bench.py --population 64 --rounds 1 -- experiment=ring steps=2000 device=cuda \
    eval_every=2000 sample_every=2000 ckpt_every=2000 eval.theory_samples=10000
paper=(experiment=paper_mnist dataset.root=.mnist device=cuda)
step steady_fp32 90 "$PY" scripts/bench.py --iters 3000 --warmup 300 -- "${paper[@]}"
step steady_bf16 90 "$PY" scripts/bench.py --iters 3000 --warmup 300 -- "${paper[@]}" precision=bf16
step steady_graphs 240 "$PY" scripts/bench.py --iters 3000 --warmup 300 -- "${paper[@]}" compile=true
step vs_maxout 240 "$PY" scripts/bench.py --vs-handwritten .mnist --iters 5000 --rounds 3 --device cuda
step vs_maxout_graphs 300 "$PY" scripts/bench.py --vs-handwritten .mnist --iters 5000 --rounds 3 --device cuda compile=true
"$PY" scripts/export_images.py /tmp/cifar_shaped --dataset noise --n 5000 > /dev/null
step vs_dcgan 240 "$PY" scripts/bench.py --vs-handwritten /tmp/cifar_shaped --arch dcgan --iters 1000 --rounds 3 --device cuda
