# Session 9 device runs (issue 21), three calls back to back on one warm machine (the second
# and third read the first's sweeps from /tmp, which stays while the machine is held):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v9.sh sweep  # fp8 kernel tests (signed zeros), fp8 few-rows vs _scaled_mm, decode-attention sweeps
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v9.sh ab     # W1 fp8 (gemv) and W2 (bf16 256, fp8+KV8 1024) with the sweeps' options vs without
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v9.sh w5     # issue 14: W5 bs1 bf16 / fp8, the transformers slice at 64 prompts
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v9.sh spec   # issue 13's off-switch at batch 1 (spec_bench)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v9.sh chunk  # issue 21 item 2: W2 bf16 at chunked-prefill 2048 (default) vs 4096
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v9.sh sched  # issue 21 item 2: W1 fp8 with the quantisation fused into norm/SiLU vs not; W2 bf16 at 512 running (graphs to 512) with the output reserve vs without (retractions recorded)
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?sweep|ab|w5|spec|chunk|sched}"
source benchmarks/gpu/session_setup.sh
case "$PART" in
sweep)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_fp8_linear.py tests/kernels/test_triton_fp8_kv.py \
    tests/kernels/test_triton_fp8_act.py tests/kernels/test_triton_attention.py > /tmp/kernels.log 2>&1; stamp "$(tail -1 /tmp/kernels.log)"
  grep -E "^FAILED" /tmp/kernels.log | head -10
  timeout 150 python3 benchmarks/kernels/fp8_small_m.py --out /tmp/fp8_small_m.json > /tmp/fp8_small_m.log 2>&1
  stamp "fp8 small M:"; grep -A12 linear_ms_per_step /tmp/fp8_small_m.log | head -22
  timeout 200 python3 benchmarks/kernels/decode_sweep.py --kv-dtype fp8 --budget-s 170 --out /tmp/decode_sweep_fp8.json > /tmp/ds8.log 2>&1
  stamp "decode fp8 1024:"; grep -A3 "^fastest" /tmp/ds8.log
  timeout 170 python3 benchmarks/kernels/decode_sweep.py --batch 256 --kv-dtype bf16 --budget-s 140 --out /tmp/decode_sweep_bf16.json > /tmp/ds16.log 2>&1
  stamp "decode bf16 256:"; grep -A3 "^fastest" /tmp/ds16.log
  cp /tmp/fp8_small_m.json /tmp/decode_sweep_fp8.json /tmp/decode_sweep_bf16.json $OUT/ 2>/dev/null
  ;;
ab)
  G=$(python3 benchmarks/gpu/pick_options.py gemv /tmp/fp8_small_m.json)
  D8=$(python3 benchmarks/gpu/pick_options.py decode /tmp/decode_sweep_fp8.json)
  D16=$(python3 benchmarks/gpu/pick_options.py decode /tmp/decode_sweep_bf16.json)
  echo "gemv: ${G:-default} | decode fp8: ${D8:-default} | decode bf16: ${D16:-default}"
  run fp8w W1 $FP8
  [ -n "$G" ] && run fp8w-gemv W1 $FP8 $G
  M1024="--engine-opt max_running_requests=1024"
  run fp8wkv1024 W2 $FP8 $KV8 $M1024
  [ -n "$D8" ] && run fp8wkv1024-tuned W2 $FP8 $KV8 $M1024 $D8
  # decode graphs up to 1024 rows (run B8: 1,397 of 1,599 forwards were eager above 256)
  run fp8wkv1024-g1024 W2 $FP8 $KV8 $M1024 $D8 --platform-opt cuda_graph_max_batch_size=1024
  # the bf16 A/B against run B8's 8,937 (another machine) only if time is left
  [ -n "$D16" ] && [ $(( SECONDS - T0 )) -lt 400 ] && run bf16-tuned W2 $D16
  ;;
w5)
  for q in "" "--quantization fp8"; do
    timeout 150 anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 --num-prompts 1 \
      --input-len 128 --output-len 256 --context-len 4096 --no-progress $q --json $OUT/W5-bs1${q:+-fp8}.json > /tmp/w5.log 2>&1
    stamp "W5 bs1 ${q:-bf16}: $(grep -i "tok/s\|ms" /tmp/w5.log | tail -2 | tr '\n' ' ')"
  done
  timeout 330 python3 benchmarks/gpu/w5_moe.py --peer --prompts 0 --slice 64 --out $OUT > /tmp/w5.log 2>&1; stamp "W5 slice 64:"; tail -8 /tmp/w5.log
  ;;
spec)
  timeout 500 python3 benchmarks/gpu/spec_bench.py --batches 1 --out $OUT > /tmp/spec.log 2>&1; stamp "spec_bench:"; tail -8 /tmp/spec.log
  ;;
chunk)
  run bf16 W2
  run bf16-chunk4096 W2 --engine-opt chunked_prefill_size=4096
  ;;
sched)
  # plugin API 2.4: the norms / SiLU quantise for their projection (default) vs a launch each
  run fp8w-fused W1 $FP8
  run fp8w-unfused W1 $FP8 --platform-opt cuda_fp8_fused_activations=false
  M512="--engine-opt max_running_requests=512 --platform-opt cuda_graph_max_batch_size=512"
  run bf16-512-reserve W2 $M512
  run bf16-512-noreserve W2 $M512 --engine-opt schedule_conservativeness=0
  ;;
esac
ls $OUT
