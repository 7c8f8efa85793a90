# H100 run K (final): W1 and W3 beside transformers; W6 and W2 with the MIXED-split threshold.
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 130 python3 $R W1 --peer --out $OUT > $OUT/bench.log 2>&1; grep -E '"ms_per_step"|"tok_s"|ms_per_token' $OUT/W1.json
timeout 100 python3 $R W3 --peer --out $OUT >> $OUT/bench.log 2>&1; grep -E 'ttft' $OUT/W3.json
timeout 75 python3 $R W6 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy' $OUT/W6.json
timeout 200 python3 $R W2 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median|wall_s' $OUT/W2.json
tail -3 $OUT/bench.log
timeout 120 anyware conformance --platform cuda --report $OUT/conf -n 4 2>&1 | tail -4
