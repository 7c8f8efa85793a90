# H100 run M: W3 beside transformers with the dense-prefill threshold (2048 tokens).
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
timeout 150 python3 benchmarks/run.py W3 --peer --out $OUT > $OUT/bench.log 2>&1; grep -E 'ttft' $OUT/W3.json
tail -2 $OUT/bench.log
