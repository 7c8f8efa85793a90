# H100/H200 run O (session 3): prefill CUDA graphs. Kernel and engine tests on the GPU, the
# graphs conformance tier, W3 with prefill graphs vs without (same call), W1 and W6.
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -4 $OUT/setup.log
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 150 python3 -m pytest tests/kernels -q -p no:cacheprovider 2>&1 | tee $OUT/kernels_pytest.log | tail -3
ANYWARE_TEST_PLATFORM=cuda timeout 200 python3 -m pytest tests/engine tests/unit/test_overlap_scheduler.py -q -n 4 -p no:cacheprovider 2>&1 | tee $OUT/engine_tests_cuda.log | tail -3
timeout 120 anyware conformance --platform cuda --tiers graphs,attention --report $OUT/conf -n 4 2>&1 | tail -4
timeout 110 python3 $R W3 --out $OUT > $OUT/bench.log 2>&1; grep -E 'ttft|tflops|replays' $OUT/W3.json
timeout 110 python3 $R W3 --out $OUT --tag noprefillgraphs --platform-opt cuda_graph_max_prefill_tokens=0 >> $OUT/bench.log 2>&1; grep -E 'ttft|tflops|replays' $OUT/W3-noprefillgraphs.json
timeout 90 python3 $R W1 --out $OUT >> $OUT/bench.log 2>&1; grep -E '"ms_per_step"|"tok_s"' $OUT/W1.json
tail -3 $OUT/bench.log
cd $OUT && tar czf results.tgz conf/conformance.json conf/conformance.md *.log W*.json 2>/dev/null; ls
