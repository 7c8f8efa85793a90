# GPU run S (session 3): W2 and W6 at the final code (prefill graphs on), for regressions
# under load; single-request prefills at the tail of W2 replay graphs among mixed steps.
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 90 python3 $R W6 --out $OUT > $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy' $OUT/W6.json
timeout 300 python3 $R W2 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median|wall_s' $OUT/W2.json
tail -2 $OUT/bench.log
