# H100 run F: W4 / W4Z (radix cache on vs off, engines freed in between); FlashInfer: the first
# conformance failure with its traceback, then W1 on FlashInfer (JIT-compiles its kernels).
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 170 python3 $R W4 --w4-groups 16 --out $OUT > $OUT/bench.log 2>&1; grep -E "output_tok_s|speedup|cached_tok" $OUT/W4.json
timeout 100 python3 $R W4Z --w4-groups 8 --out $OUT >> $OUT/bench.log 2>&1; grep -E "output_tok_s|speedup" $OUT/W4Z.json
tail -3 $OUT/bench.log
{
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/flashinfer*.whl .whl/apache*.whl
export PYTHONPATH=$PWD:/tmp/site
timeout 150 anyware conformance --platform cuda --tiers attention -- -x --tb=short 2>&1 | tail -40
timeout 120 python3 $R W1 --out $OUT --tag flashinfer --engine-opt attention_backend=flashinfer 2>&1 | grep -E '"ms_per_step"|"tok_s"|Error|error' | head
} > $OUT/flashinfer.log 2>&1
tail -50 $OUT/flashinfer.log
