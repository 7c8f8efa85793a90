# GPU run R (session 3, final): the full conformance suite for plugin API 1.3.0 and the
# issue's bench command at the final commit.
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
timeout 240 anyware conformance --platform cuda --report $OUT/conf -n 4 2>&1 | tail -4
timeout 150 anyware bench --model llama-3.1-8b --load-format dummy --json $OUT/cli-bench-8b.json > $OUT/cli-bench-8b.log 2>&1; echo "bench rc=$?"; grep -E "output_tok_s|ttft_ms_median|itl_ms_median" $OUT/cli-bench-8b.json
