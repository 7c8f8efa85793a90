# Session 7 device runs (issue 21, FP8), one part per call (each < 10 minutes):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh checks  # fp8 kernel tests + conformance ops/attention fp8 cases on the GPU
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh w1      # W1 (8B shape, bs1): bf16, fp8 linear, fp8 linear + fp8 KV; W3 (TTFT 1024/4096) bf16 and fp8 linear
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh w2      # W2 (1000 x 1024/1024) bf16 at 256 and 512 running requests
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh w2f     # W2 with fp8 linear + fp8 KV at 256, 512 and 1024 running requests
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh profile  # issue 21 item 1: W3 prefill, W1 decode, W2 steady-state decode (256 requests), kernel classes vs floor, bf16
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh profile8 # the same with fp8 linear layers + fp8 KV
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v7.sh w5       # issue 14: W5 bs1 (one-launch q/k norm + rotary) and the peer slice at 64 prompts, MoE decode profile
# Results: $OUT/*.json (benchmarks/run.py's format, engine_opts recorded) and logs.
set -u
PART="${1:?checks|w1|w2|w2f|profile|profile8|w5}"
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT}" PYTHONUNBUFFERED=1
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
RUN_TIMEOUT=400
source benchmarks/gpu/runlib.sh
case "$PART" in
checks)
  timeout 200 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_fp8_linear.py tests/kernels/test_norm_rotary.py tests/kernels/test_triton_elementwise.py tests/kernels/test_triton_moe_fp8.py > $OUT/kernels.log 2>&1; tail -3 $OUT/kernels.log
  timeout 150 anyware conformance --platform cuda --tiers moe --report $OUT/conf-moe -- -k "fp8" > $OUT/conf-moe.log 2>&1; tail -2 $OUT/conf-moe.log
  timeout 120 anyware conformance --platform cuda --tiers graphs,engine --report $OUT/conf-graphs-fp8 -- -k "fp8" > $OUT/conf-graphs-fp8.log 2>&1; tail -2 $OUT/conf-graphs-fp8.log
  timeout 120 anyware conformance --platform cuda --tiers ops --report $OUT/conf-ops-rope -- -k "norm_rotary or rotary" > $OUT/conf-ops-rope.log 2>&1; tail -2 $OUT/conf-ops-rope.log
  timeout 200 anyware conformance --platform cuda --tiers ops --report $OUT/conf-ops -- -k "fp8" > $OUT/conf-ops.log 2>&1; tail -4 $OUT/conf-ops.log
  timeout 150 anyware conformance --platform cuda --tiers attention --report $OUT/conf-attn -- -k "fp8" > $OUT/conf-attn.log 2>&1; tail -4 $OUT/conf-attn.log
  rm -f $OUT/conf-*/*.xml
  ;;
w1)
  run bf16 W1
  run fp8w W1 $FP8
  run fp8wkv W1 $FP8 $KV8
  run bf16 W3
  run fp8w W3 $FP8
  ;;
w2)
  run bf16 W2
  run bf16-512 W2 --engine-opt max_running_requests=512
  ;;
w2f)
  run fp8wkv W2 $FP8 $KV8
  run fp8wkv512 W2 $FP8 $KV8 --engine-opt max_running_requests=512
  run fp8wkv1024 W2 $FP8 $KV8 --engine-opt max_running_requests=1024
  ;;
profile)
  timeout 560 python3 benchmarks/gpu/profile_steps.py --sizes 1024,4096 --batch-decode 256 --top 12 --out $OUT/profile-bf16.json > $OUT/profile-bf16.log 2>&1; tail -5 $OUT/profile-bf16.log
  ;;
profile8)
  timeout 560 python3 benchmarks/gpu/profile_steps.py --sizes 1024,4096 --batch-decode 256 --top 12 $FP8 $KV8 --out $OUT/profile-fp8.json > $OUT/profile-fp8.log 2>&1; tail -5 $OUT/profile-fp8.log
  ;;
w5)
  # W5 bs1 decode through the CLI bench at batch 1, bf16 and fp8 (linear layers + experts)
  for q in "" "--quantization fp8"; do
    timeout 150 anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 --num-prompts 1 \
      --input-len 128 --output-len 256 --context-len 4096 --no-progress $q --json $OUT/W5-bs1${q:+-fp8}.json > $OUT/w5-bs1${q:+-fp8}.log 2>&1
    tail -4 $OUT/w5-bs1${q:+-fp8}.log
  done
  timeout 330 python3 benchmarks/gpu/w5_moe.py --peer --prompts 0 --slice 64 --out $OUT > $OUT/w5.log 2>&1; tail -8 $OUT/w5.log
  timeout 200 python3 benchmarks/gpu/profile_steps.py --model qwen3-30b-a3b --sizes 1024 --decode-steps 64 --top 12 --out $OUT/profile-moe.json > $OUT/profile-moe.log 2>&1; tail -3 $OUT/profile-moe.log
  ;;
esac
ls $OUT
