# Device session 13 (issues 21 and 14):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v13.sh a   # what programmatic dependent launch saves per kernel
#                                                                # in a graph (benchmarks/kernels/pdl_chain.py); W1 bf16
#                                                                # and W5 batch 1 at the head (this machine's baseline)
# A call returns at most 8 files: each part keeps its results to a few JSON files.
set -u
PART="${1:?a}"
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
esac
ls $OUT
