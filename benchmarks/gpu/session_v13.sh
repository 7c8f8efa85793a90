# Device session 13 (issues 21 and 14):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v13.sh a   # what programmatic dependent launch saves per kernel
#                                                                # in a graph (benchmarks/kernels/pdl_chain.py); W1 bf16
#                                                                # and W5 batch 1 at the head (this machine's baseline)
#   ... b   # PDL in the engine: the GPU kernel tests with PDL (same bits eager and in a graph);
#           # W5 batch 1 and W1 bf16 with triton_pdl off / on, alternated
#   ... c   # W2 bf16 with triton_pdl on (the default) and off
#   ... c2  # the same, in the other order (a second pair on another machine)
#   ... d   # W2 fp8 weights + KV, W3, W4 (16 groups), W6 at the head: issue 21's closing table
#   ... e1  # part e without the transformers slice (what the device budget allowed)
#   ... e   # W5 offline 1000 x 1024/1024 through the CLI, transformers' generate_batch slice
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?a|b|c|c2|d|e|e1}"
source benchmarks/gpu/session_setup.sh
W5="anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 --num-prompts 1 --input-len 128
  --output-len 256 --context-len 4096 --no-progress"
w5() {  # w5 TAG [options...]: W5 batch 1 (ITL median) into $OUT/W5-bs1-TAG.json
  local tag=$1; shift
  timeout 120 $W5 "$@" --json $OUT/W5-bs1-$tag.json > /tmp/w5-$tag.log 2>&1
  stamp "W5 bs1 $tag: $(grep -o '"itl_ms_median": [0-9.]*' $OUT/W5-bs1-$tag.json)"
  tail -3 /tmp/w5-$tag.log | grep -i error || true
}
case "$PART" in
a)
  timeout 150 python3 benchmarks/kernels/pdl_chain.py --out $OUT/pdl_chain.json > /tmp/pdl.log 2>&1
  stamp "pdl chain:"; cat /tmp/pdl.log | tail -4
  run bf16 W1
  w5 head
  ;;
b)
  timeout 200 python3 -m pytest -q -x tests/kernels/test_triton_pdl.py tests/kernels/test_triton_moe_small.py \
    tests/kernels/test_triton_elementwise.py tests/kernels/test_norm_rotary.py > /tmp/pytest.log 2>&1
  stamp "GPU kernel tests: $(tail -1 /tmp/pytest.log)"
  grep -E "^(FAILED|ERROR)" /tmp/pytest.log | head -5
  for i in 1 2; do
    w5 pdl-off-$i --platform-option triton_pdl=false
    w5 pdl-on-$i
  done
  for i in 1 2; do
    run pdl-off-$i W1 --platform-opt triton_pdl=false
    run pdl-on-$i W1
  done
  ;;
c)
  run pdl-on W2
  run pdl-off W2 --platform-opt triton_pdl=false
  ;;
c2)
  run pdl-off-2 W2 --platform-opt triton_pdl=false
  run pdl-on-2 W2
  ;;
d)
  run fp8wkv W2 $FP8 $KV8
  run bf16 W3
  run bf16 W4 --w4-groups 16
  run bf16 W6
  ;;
e|e1)
  timeout 330 anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 --num-prompts 1000 \
    --input-len 1024 --output-len 1024 --no-progress --json $OUT/W5-offline.json > /tmp/w5off.log 2>&1
  stamp "W5 offline: $(grep -o '"output_tok_s": [0-9.]*' $OUT/W5-offline.json)"
  tail -3 /tmp/w5off.log | grep -i error || true
  [ "$PART" = e1 ] && { ls $OUT; exit 0; }
  timeout 150 python3 benchmarks/gpu/w5_moe.py --peer --prompts 0 --parts peer --out $OUT > /tmp/peer.log 2>&1
  stamp "transformers slice:"; tail -3 /tmp/peer.log
  ;;
esac
ls $OUT
