# GPU check of the contract split (plugin API 2.0.0, anyware.runtime): the CUDA platform's
# derived capabilities, its conformance run, and the CUDA host/kernel tests, unchanged in
# behaviour. Run: ANYWARE_COMMIT=<sha> bash benchmarks/gpu/contract_check.sh   (writes $OUT)
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=$PWD
anyware platforms --json > $OUT/platforms.json; grep -E '"(selected|attention_backend|page_sizes)"' -A1 $OUT/platforms.json | head -20
timeout 420 anyware conformance --platform cuda --report $OUT/conformance > $OUT/conformance.log 2>&1; tail -4 $OUT/conformance.log
timeout 150 python3 -m pytest -q -x tests/kernels/test_cuda_platform.py tests/kernels/test_triton_attention_backend.py > $OUT/kernels.log 2>&1; tail -2 $OUT/kernels.log
