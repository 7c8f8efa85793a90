# Session 10 device runs (issues 21 and 14), one warm machine, calls back to back:
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v10.sh a   # the fp8 kernel tests on the GPU (plugin API 2.4's fused
#                                                                # producers, never run on a GPU before); W1 fp8 fused vs
#                                                                # unfused; W2 bf16 at 512 running (graphs to 512) with the
#                                                                # output reserve vs without (retractions recorded)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v10.sh b   # W2 with the running cap sized from the KV capacity
#                                                                # (bf16, fp8 + fp8 KV); W5 batch 1 bf16
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?a|b}"
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT}" PYTHONUNBUFFERED=1
source benchmarks/gpu/setup.sh > /tmp/setup.log 2>&1; tail -2 /tmp/setup.log
export PYTHONPATH=$PWD
[ -d .whl ] && python3 -m pip install -q --no-index --no-deps .whl/msgspec-*.whl > /dev/null 2>&1
RUN_LOGS=/tmp
source benchmarks/gpu/runlib.sh
case "$PART" in
a)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_fp8_act.py \
    tests/kernels/test_triton_fp8_linear.py tests/kernels/test_triton_fp8_kv.py > /tmp/kernels.log 2>&1
  stamp "$(tail -1 /tmp/kernels.log)"; grep -E "^FAILED" /tmp/kernels.log | head -10
  cp /tmp/kernels.log $OUT/kernels-fp8.log
  run fp8w-fused W1 $FP8
  run fp8w-unfused W1 $FP8 --platform-opt cuda_fp8_fused_activations=false
  M512="--engine-opt max_running_requests=512 --platform-opt cuda_graph_max_batch_size=512"
  run bf16-512-reserve W2 $M512
  run bf16-512-noreserve W2 $M512 --engine-opt schedule_conservativeness=0
  ;;
b)
  echo "part b is filled in once the running cap is sized from the KV capacity"
  ;;
esac
ls $OUT
