# Device call (issue 14, after tuning): W5 with the tuned configs and the decode-sized path.
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_w5b.sh        # < 9.5 minutes on an H200
# 1. the offline W5 workload through the CLI, the way a user runs it (CUDA graphs + overlap:
#    the platform's defaults): anyware bench --model qwen3-30b-a3b --load-format dummy
# 2. the kernel micro-benchmark, batch-1 decode, the 32 x 256/256 slice and transformers beside it
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
timeout 260 anyware bench --model qwen3-30b-a3b --load-format dummy --dtype bfloat16 \
    --num-prompts ${PROMPTS:-1000} --input-len 1024 --output-len 1024 --context-len 4096 \
    --no-progress --json $OUT/W5-cli-bench.json > $OUT/cli_bench.log 2>&1; tail -12 $OUT/cli_bench.log
timeout 300 python3 benchmarks/gpu/w5_moe.py --peer --prompts 0 --out $OUT > $OUT/w5.log 2>&1
tail -8 $OUT/w5.log
