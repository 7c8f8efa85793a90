# GPU run Q (session 3): prefill graphs A/B interleaved in one engine at several prompt
# lengths; W1 and W3 beside transformers on this machine.
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 200 python3 benchmarks/gpu/prefill_graphs.py --out $OUT/prefill_graphs.json 2>&1 | tee $OUT/prefill_graphs.log | grep tokens
timeout 150 python3 $R W1 --peer --out $OUT > $OUT/bench.log 2>&1; grep -E '"ms_per_step"|"tok_s"|ms_per_token' $OUT/W1.json
timeout 150 python3 $R W3 --peer --out $OUT >> $OUT/bench.log 2>&1; grep -E 'ttft|1024|4096' $OUT/W3.json | head -8
tail -2 $OUT/bench.log
