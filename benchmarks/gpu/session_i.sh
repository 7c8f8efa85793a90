# H100 run I: kernel tests at GPU shapes (MIXED split, dense prefill), conformance on CUDA
# (plugin API 1.2.0), W3 (dense prefill) and W6 (MIXED split, overlap).
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 120 python3 -m pytest tests/kernels -q -p no:cacheprovider 2>&1 | tee $OUT/kernels_pytest.log | tail -4
timeout 150 anyware conformance --platform cuda --report $OUT/conf -n 4 2>&1 | tail -6
timeout 80 python3 $R W3 --out $OUT > $OUT/bench.log 2>&1; grep -E 'ttft|tflops' $OUT/W3.json
timeout 80 python3 $R W6 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median' $OUT/W6.json
tail -3 $OUT/bench.log
