# Session 11 device runs (issues 14 and 21), one call per part:
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v11.sh a   # kernel tests of the in-launch decode merge and the flat MoE
#                                                                # down kernel on the GPU; the decode-sized MoE path tuned at
#                                                                # one token (the installed table's blocks timed with the
#                                                                # per-expert and the flat down kernel), its table merged into
#                                                                # this copy of the tree; W5 batch 1 and its profile; W1 bf16
#                                                                # with the in-launch merge and with the second launch
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v11.sh b   # the fp8 decode kernel with one stage (its tiles loaded to
#                                                                # registers and converted before the shared-memory staging:
#                                                                # never swept); bf16 linear layers at one row, cuBLAS vs the
#                                                                # few-rows Triton kernel (gemv_small_m.py)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v11.sh c   # issue 21 item 2: W2 bf16 at chunked prefill 2048 (default),
#                                                                # 4096 and 8192 tokens; the W5 batch-1 profile if time is left
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v11.sh d   # no-regression check: W6, W4 (16 groups), W3 if time is left
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?a|b|c|d}"
source benchmarks/gpu/session_setup.sh
case "$PART" in
a)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_attention.py \
    tests/kernels/test_triton_moe_small.py tests/kernels/test_triton_attention_backend.py > /tmp/kernels.log 2>&1
  stamp "$(tail -1 /tmp/kernels.log)"; grep -E "^FAILED" /tmp/kernels.log | head -10
  cp /tmp/kernels.log $OUT/kernels.log
  timeout 200 python3 benchmarks/kernels/tune_moe.py --buckets "" --small-budget-s 130 --out /tmp/tune \
    > /tmp/tune.log 2>&1
  stamp "tune:"; grep -E "small path|installed" /tmp/tune.log
  cp /tmp/tune/tune_moe_report_E128.json $OUT/tune-moe-small.json 2>/dev/null
  # the tuned "small" entry into the table the engine loads (this copy of the tree only)
  python3 - <<'PY'
import json, pathlib
rep = json.loads(pathlib.Path("/tmp/tune/tune_moe_report_E128.json").read_text())
path = pathlib.Path("core/kernels/triton/moe_configs") / rep["install_as"]
table = json.loads(path.read_text())
table["small"] = rep["buckets"]["small"]["config"]
path.write_text(json.dumps(table, indent=1) + "\n")
print("installed small:", table["small"])
PY
  timeout 120 anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 --num-prompts 1 \
    --input-len 128 --output-len 256 --context-len 4096 --no-progress --json $OUT/W5-bs1.json > /tmp/w5.log 2>&1
  stamp "W5 bs1: $(grep -i "tok/s\|ms" /tmp/w5.log | tail -2 | tr '\n' ' ')"
  P="python3 benchmarks/gpu/profile_steps.py --sizes= --top 14"
  timeout 80 $P --model qwen3-30b-a3b --decode-steps 64 --out $OUT/profile-w5-bs1.json > /tmp/p2.log 2>&1
  stamp "w5 bs1 profile $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-w5-bs1.json)"
  run bf16 W1
  run bf16-2launch W1 --platform-opt triton_decode_fused_reduce=false
  ;;
b)
  # the in-launch merge over the non-empty splits only (call a's merged all 32 of a graph's splits)
  run bf16-merge W1
  run bf16-2launch W1 --platform-opt triton_decode_fused_reduce=false
  W5="anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 --num-prompts 1 --input-len 128
    --output-len 256 --context-len 4096 --no-progress"
  timeout 100 $W5 --json $OUT/W5-bs1-merge.json > /tmp/w5a.log 2>&1
  timeout 100 $W5 --platform-option triton_decode_fused_reduce=false --json $OUT/W5-bs1-2launch.json > /tmp/w5b.log 2>&1
  stamp "W5 bs1 ITL median merge / 2 launches: $(grep -o '"itl_ms_median": [0-9.]*' $OUT/W5-bs1-merge.json) / $(grep -o '"itl_ms_median": [0-9.]*' $OUT/W5-bs1-2launch.json)"
  timeout 100 python3 benchmarks/kernels/decode_sweep.py --kv-dtype fp8 --block-n 64,128 --num-warps 4,8 \
    --num-stages 1,2 --splits 1 --heads-first-top 0 --out $OUT/decode_sweep_fp8_stages.json > /tmp/ds8.log 2>&1
  stamp "decode fp8 1024, pipelined vs register loads (stages 1):"; grep -A9 "^== sorted" /tmp/ds8.log
  timeout 200 python3 benchmarks/kernels/gemv_small_m.py --shape-budget-s 14 --out $OUT/gemv_small_m.json \
    > /tmp/gemv.log 2>&1
  stamp "gemv:"; grep -A6 "^== per-step" /tmp/gemv.log
  ;;
c)
  run bf16 W2
  run bf16-chunk4096 W2 --engine-opt chunked_prefill_size=4096
  [ $(( SECONDS - T0 )) -lt 380 ] && run bf16-chunk8192 W2 --engine-opt chunked_prefill_size=8192
  [ $(( SECONDS - T0 )) -lt 480 ] && { timeout 80 python3 benchmarks/gpu/profile_steps.py --sizes= --top 14 \
    --model qwen3-30b-a3b --decode-steps 64 --out $OUT/profile-w5-bs1.json > /tmp/p2.log 2>&1
    stamp "w5 bs1 profile $(grep -o '"ms_per_step": [0-9.]*' $OUT/profile-w5-bs1.json)"; }
  ;;
d)
  # issue 21's no-regression check at this session's head: W6 (host-bound 0.5B), W4 (radix cache on vs off)
  run bf16 W6
  run g16 W4 --w4-groups 16
  [ $(( SECONDS - T0 )) -lt 200 ] && run bf16 W3
  ;;
esac
ls $OUT
