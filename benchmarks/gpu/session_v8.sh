# Session 8 device runs: session_v7.sh's queue packed into three calls of < 10 minutes each,
# issued back to back on one warm machine (the device budget is 30 minutes):
#   A: ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v8.sh a  # carry .whl .whl-gdl: GPU checks, GuideLLM (issue 20), W1 bf16 / fp8+KV8
#   B: ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v8.sh b  # W1 fp8 linear, W3 bf16 / fp8, W2 bf16 256, W2 fp8+KV8 at 1024 / 512
#   C: ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v8.sh c  # profiles bf16 and fp8 (issue 21 item 1)
#   D: ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v8.sh d  # after C: the exact e4m3 rounding and the few-rows fp8 kernel
#      (tests, conformance, W1), steady-state decode profiles (bf16 at 256, fp8 + KV8 at 1024), W2 bf16 at 512 with graphs to 512
# The image already has pyarrow and pandas, so GuideLLM needs only .whl-gdl (27 MB) beside .whl.
set -u
PART="${1:?a|b|c|d}"
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT}" PYTHONUNBUFFERED=1
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
export PYTHONPATH=$PWD
source benchmarks/gpu/runlib.sh
case "$PART" in
a)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_fp8_linear.py tests/kernels/test_norm_rotary.py \
    tests/kernels/test_triton_elementwise.py tests/kernels/test_triton_moe_fp8.py > $OUT/kernels.log 2>&1; stamp "$(tail -1 $OUT/kernels.log)"
  timeout 200 anyware conformance --platform cuda --tiers ops,attention,moe,graphs,engine --report $OUT/conf \
    -- -k "fp8 or rotary" > $OUT/conf.log 2>&1; stamp "$(tail -2 $OUT/conf.log)"
  rm -f $OUT/conf/*.xml
  ( GDL_TIMEOUT_SAT=150 GDL_TIMEOUT_POISSON=90 timeout 280 bash benchmarks/gpu/guidellm_gpu.sh run ) > $OUT/guidellm.log 2>&1
  stamp "guidellm:"; tail -4 $OUT/guidellm.log
  export PYTHONPATH=$PWD
  run bf16 W1
  run fp8wkv W1 $FP8 $KV8
  ;;
b)
  run fp8w W1 $FP8
  run bf16 W3
  run fp8w W3 $FP8
  run bf16 W2
  run fp8wkv1024 W2 $FP8 $KV8 --engine-opt max_running_requests=1024
  run fp8wkv512 W2 $FP8 $KV8 --engine-opt max_running_requests=512
  ;;
c)
  timeout 270 python3 benchmarks/gpu/profile_steps.py --sizes 1024,4096 --batch-decode 256 --top 12 --out $OUT/profile-bf16.json > $OUT/profile-bf16.log 2>&1; stamp "$(tail -3 $OUT/profile-bf16.log)"
  timeout 270 python3 benchmarks/gpu/profile_steps.py --sizes 1024,4096 --batch-decode 256 --top 12 $FP8 $KV8 --out $OUT/profile-fp8.json > $OUT/profile-fp8.log 2>&1; stamp "$(tail -3 $OUT/profile-fp8.log)"
  ;;
d)
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_fp8_linear.py tests/kernels/test_triton_fp8_kv.py \
    tests/kernels/test_triton_elementwise.py tests/kernels/test_triton_moe_fp8.py > $OUT/kernels.log 2>&1; stamp "$(tail -1 $OUT/kernels.log)"
  grep -E "^FAILED|^E  " $OUT/kernels.log | head -20
  run fp8w W1 $FP8
  run fp8wkv W1 $FP8 $KV8
  timeout 90 anyware conformance --platform cuda --tiers ops --report $OUT/conf-ops -- -k "fp8" > $OUT/conf-ops.log 2>&1; stamp "$(tail -2 $OUT/conf-ops.log)"
  rm -f $OUT/conf-ops/*.xml
  P="python3 benchmarks/gpu/profile_steps.py --sizes= --decode-steps 0 --top 14"
  timeout 100 $P --batch-decode 256 --out $OUT/profile-bd256-bf16.json > $OUT/profile-bd256-bf16.log 2>&1; stamp "bd256 bf16 $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-bd256-bf16.json)"
  timeout 130 $P --batch-decode 1024 $FP8 $KV8 --out $OUT/profile-bd1024-fp8.json > $OUT/profile-bd1024-fp8.log 2>&1; stamp "bd1024 fp8 $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-bd1024-fp8.json)"
  timeout 70 python3 benchmarks/gpu/profile_steps.py --sizes= --decode-steps 64 --top 10 $FP8 --out $OUT/profile-w1-fp8.json > $OUT/profile-w1-fp8.log 2>&1; stamp "w1 fp8 profile $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-w1-fp8.json)"
  run bf16-512g W2 --engine-opt max_running_requests=512 --platform-opt cuda_graph_max_batch_size=512
  ;;
esac
ls $OUT
