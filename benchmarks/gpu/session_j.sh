# H100 run J: W6 A/B in one run (default; dense prefill off; MIXED split off), then W2.
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 75 python3 $R W6 --out $OUT > $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy' $OUT/W6.json
timeout 75 python3 $R W6 --out $OUT --tag nodense --backend-attr dense_prefill=false >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy' $OUT/W6-nodense.json
timeout 75 python3 $R W6 --out $OUT --tag nosplit --backend-attr split_mixed=false >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy' $OUT/W6-nosplit.json
timeout 330 python3 $R W2 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median|wall_s' $OUT/W2.json
tail -3 $OUT/bench.log
