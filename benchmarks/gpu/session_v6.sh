# Session 6 device runs after merging wave 2's branches, one part per call (each < 10 minutes):
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v6.sh spec     # issue 13: verify-graph parity, spec_bench (8B shape, + EAGLE-3 head cost)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v6.sh serve    # issue 20: serve_bench (0.5B and 8B shapes, server vs offline)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v6.sh real     # issue 13: demo target + demo draft / n-gram on real text (spec_real.py)
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v6.sh ttft     # issue 20: the TTFT tail at 70% load, 300 requests, per-request TTFTs
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/session_v6.sh checks   # kernel/toolkit tests, conformance graphs tier + verify attention cases
# The image lacks the server's packages (fastapi, starlette, pydantic, uvicorn, opentelemetry-api)
# and the engine process's transport (pyzmq, msgspec): carry them as .whl/ (cp312 wheels, made
# with pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl).
set -u
PART="${1:?spec|serve|real|ttft|checks}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $OUT/wheels.log 2>&1 || { tail -5 $OUT/wheels.log; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
export PYTHONPATH=/tmp/site:$PWD
case "$PART" in
spec)
  timeout 120 python3 benchmarks/gpu/verify_parity.py --out $OUT > $OUT/verify_parity.log 2>&1; tail -8 $OUT/verify_parity.log
  timeout 420 python3 benchmarks/gpu/spec_bench.py --eagle3 --out $OUT > $OUT/spec_bench.log 2>&1; tail -20 $OUT/spec_bench.log
  ;;
serve)
  timeout 560 python3 benchmarks/gpu/serve_bench.py --out $OUT 2>&1 | tee $OUT/serve_bench.log | tail -25
  ;;
real)
  timeout 300 python3 benchmarks/gpu/spec_real.py --out $OUT > $OUT/spec_real.log 2>&1; tail -8 $OUT/spec_real.log
  ;;
ttft)
  timeout 400 python3 benchmarks/gpu/ttft_tail.py --out $OUT 2>&1 | tee $OUT/ttft_tail.log | tail -6
  ;;
checks)
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_attention_backend.py tests/kernels/test_cuda_platform.py tests/unit/test_torchdev.py > $OUT/kernels.log 2>&1; tail -3 $OUT/kernels.log
  timeout 150 anyware conformance --platform cuda --tiers graphs --report $OUT/conf-graphs > $OUT/conf-graphs.log 2>&1; tail -4 $OUT/conf-graphs.log
  timeout 90 anyware conformance --platform cuda --tiers attention --report $OUT/conf-attn -- -k "verify" > $OUT/conf-attn.log 2>&1; tail -4 $OUT/conf-attn.log
  rm -f $OUT/conf-graphs/*.xml $OUT/conf-attn/*.xml
  ;;
esac
ls $OUT
