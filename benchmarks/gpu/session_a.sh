# H100 run A: engine parity on CUDA, W1 (+ transformers peer), W3, conformance on CUDA.
source benchmarks/gpu/setup.sh
R=benchmarks/run.py
timeout 200 env ANYWARE_TEST_PLATFORM=cuda python3 -m pytest tests/engine -q -x -n 4 -p no:cacheprovider 2>&1 | tail -25 | tee $OUT/engine_tests_cuda.log
timeout 170 python3 $R W1 --peer --out $OUT 2>&1 | tail -40
timeout 90 python3 $R W3 --out $OUT 2>&1 | tail -12
timeout 120 anyware conformance --platform cuda --report $OUT/conf -n 4 2>&1 | tail -15
ls -la $OUT $OUT/conf
