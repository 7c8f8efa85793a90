# H100 run H (overlap on): W2 full (1000 x 1024/1024); W2S, ours and transformers generate_batch
# on the same 64 x 512/256 slice.
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 340 python3 $R W2 --out $OUT > $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median|wall_s' $OUT/W2.json
timeout 220 python3 $R W2S --peer --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|tok_s|wall' $OUT/W2S.json
tail -5 $OUT/bench.log
