# H100 run G (overlap scheduling): engine tests on CUDA (overlap on, the default there);
# W6 overlap on vs off; W1; W3; W4Z (0%-hit overhead) with the host cost now hidden.
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
ANYWARE_TEST_PLATFORM=cuda timeout 140 python3 -m pytest tests/engine tests/unit/test_overlap_scheduler.py -q -n 4 -p no:cacheprovider 2>&1 | tee $OUT/engine_tests_cuda_overlap.log | tail -4
timeout 80 python3 $R W6 --out $OUT > $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median' $OUT/W6.json
timeout 80 python3 $R W6 --out $OUT --tag nooverlap --engine-opt overlap_schedule=false >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|busy|itl_ms_median' $OUT/W6-nooverlap.json
timeout 70 python3 $R W1 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"ms_per_step"|"tok_s"' $OUT/W1.json
timeout 70 python3 $R W3 --out $OUT >> $OUT/bench.log 2>&1; grep -E 'ttft|tflops' $OUT/W3.json
timeout 100 python3 $R W4Z --w4-groups 8 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"output_tok_s"|speedup' $OUT/W4Z.json
tail -5 $OUT/bench.log
