# GPU run P (session 3): prefill graphs after the capture-stream fix. Engine tests on the GPU,
# the graphs + attention conformance tiers, W3 with and without prefill graphs (same call),
# and `anyware serve --model DIR` end to end again (prefill graphs on).
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
python3 -m pip install -q --no-index --find-links .whl --no-build-isolation -e . > /dev/null 2>&1; echo "install rc=$?"
export PYTHONPATH=$PWD
R=benchmarks/run.py
ANYWARE_TEST_PLATFORM=cuda timeout 200 python3 -m pytest tests/engine tests/unit/test_overlap_scheduler.py -q -n 4 -p no:cacheprovider 2>&1 | tee $OUT/engine_tests_cuda.log | tail -3
timeout 120 anyware conformance --platform cuda --tiers graphs,attention --report $OUT/conf -n 4 2>&1 | tail -3
timeout 110 python3 $R W3 --out $OUT > $OUT/bench.log 2>&1; grep -E 'ttft|replays' $OUT/W3.json
timeout 110 python3 $R W3 --out $OUT --tag noprefillgraphs --platform-opt cuda_graph_max_prefill_tokens=0 >> $OUT/bench.log 2>&1; grep -E 'ttft|replays' $OUT/W3-noprefillgraphs.json
timeout 200 python3 benchmarks/gpu/cli_e2e.py --out $OUT/cli-serve-bf16.json > $OUT/cli.log 2>&1; echo "cli rc=$?"; grep -E "FAIL|startup|chat" $OUT/cli.log | cut -c1-200
tail -2 $OUT/bench.log
cd $OUT && tar czf results.tgz conf/conformance.json conf/conformance.md setup.log 2>/dev/null; ls
