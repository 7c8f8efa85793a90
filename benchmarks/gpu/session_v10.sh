# Session 10 device runs (issues 21 and 14), one warm machine, calls back to back:
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v10.sh a   # the fp8 kernel tests on the GPU (plugin API 2.4's fused
#                                                                # producers, never run on a GPU before); W1 fp8 fused vs
#                                                                # unfused; W2 bf16 at 512 running (graphs to 512) with the
#                                                                # output reserve vs without (retractions recorded)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v10.sh b   # decode-attention sweeps (fp8 at 1024 rows, bf16 at 256),
#                                                                # then W2 fp8 + fp8 KV at 1024 running, graphs to 1024, and W2 bf16 with the fastest configuration
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v10.sh c   # fp8-KV decode kernel tests; fp16 vs bf16 tiles over an fp8
#                                                                # cache; W2 fp8 + fp8 KV and bf16 with the running cap sized
#                                                                # from the KV pool (graphs to it); W5 batch 1 bf16 if time is left
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v10.sh d   # profiles: W2 bf16 steady state at the auto cap (410 rows),
#                                                                # W5 batch-1 decode; W1 bf16 if time is left
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?a|b|c|d}"
source benchmarks/gpu/session_setup.sh
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
  timeout 160 python3 benchmarks/kernels/decode_sweep.py --kv-dtype fp8 --budget-s 100 --heads-first-top 4 \
    --out $OUT/decode_sweep_fp8.json > /tmp/ds8.log 2>&1
  stamp "decode fp8 1024:"; grep -A4 "^fastest" /tmp/ds8.log
  timeout 110 python3 benchmarks/kernels/decode_sweep.py --batch 256 --kv-dtype bf16 --budget-s 75 \
    --heads-first-top 4 --out $OUT/decode_sweep_bf16.json > /tmp/ds16.log 2>&1
  stamp "decode bf16 256:"; grep -A4 "^fastest" /tmp/ds16.log
  D8=$(python3 benchmarks/gpu/pick_options.py decode $OUT/decode_sweep_fp8.json)
  D16=$(python3 benchmarks/gpu/pick_options.py decode $OUT/decode_sweep_bf16.json)
  echo "decode fp8: ${D8:-default} | decode bf16: ${D16:-default}"
  run fp8wkv1024-g1024 W2 $FP8 $KV8 --engine-opt max_running_requests=1024 $D8 \
    --platform-opt cuda_graph_max_batch_size=1024
  [ $(( SECONDS - T0 )) -lt 440 ] && run bf16-tuned W2 $D16
  ;;
c)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_fp8_kv.py \
    tests/kernels/test_triton_attention.py > /tmp/kernels.log 2>&1
  stamp "$(tail -1 /tmp/kernels.log)"; grep -E "^FAILED" /tmp/kernels.log | head -10
  timeout 100 python3 benchmarks/kernels/decode_sweep.py --kv-dtype fp8 --block-n 64,128 --num-warps 4 \
    --num-stages 2 --splits 1 --fp16-compute 1,0 --heads-first-top 0 --out /tmp/ds8.json > /tmp/ds8.log 2>&1
  stamp "decode fp8 1024, fp16 tiles vs bf16:"; grep -A6 "^== sorted" /tmp/ds8.log
  run fp8wkv-auto W2 $FP8 $KV8
  run bf16-auto W2
  [ $(( SECONDS - T0 )) -lt 430 ] && { timeout 120 anyware bench --model qwen3-30b-a3b --load-format dummy \
    --dtype bfloat16 --num-prompts 1 --input-len 128 --output-len 256 --context-len 4096 --no-progress \
    --json $OUT/W5-bs1.json > /tmp/w5.log 2>&1; stamp "W5 bs1: $(grep -i "tok/s\|ms" /tmp/w5.log | tail -2 | tr '\n' ' ')"; }
  ;;
d)
  P="python3 benchmarks/gpu/profile_steps.py --sizes= --top 14"
  timeout 90 $P --decode-steps 0 --batch-decode 410 --out $OUT/profile-bd410-bf16.json > /tmp/p1.log 2>&1
  stamp "bd410 bf16 $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-bd410-bf16.json)"
  timeout 80 $P --model qwen3-30b-a3b --decode-steps 64 --out $OUT/profile-w5-bs1.json > /tmp/p2.log 2>&1
  stamp "w5 bs1 $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-w5-bs1.json)"
  [ $(( SECONDS - T0 )) -lt 200 ] && run bf16 W1
  ;;
esac
ls $OUT
