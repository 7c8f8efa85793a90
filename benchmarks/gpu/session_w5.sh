# GPU run W5 (issue 14): the fused-MoE kernel micro-benchmark, the engine on the
# Qwen3-30B-A3B shape (bf16 dummy weights, CUDA graphs + overlap) and transformers beside it.
# One command, < 8 minutes on an H200:
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_w5.sh
# Optional second command (~8 minutes): tune the kernel's blocks for this GPU
#   ANYWARE_COMMIT=<sha> TUNE=1 bash benchmarks/gpu/session_w5.sh
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
if [ "${TUNE:-0}" = 1 ]; then
  timeout 540 python3 benchmarks/kernels/tune_moe.py --budget-s 25 --out $OUT > $OUT/tune.log 2>&1
  tail -25 $OUT/tune.log
else
  timeout 470 python3 benchmarks/gpu/w5_moe.py --peer --out $OUT > $OUT/w5.log 2>&1
  tail -40 $OUT/w5.log
fi
