# Where the 0.5B shape's host time goes (issue 20): serve_bench's 0.5B part (offline engine,
# then `anyware serve` with the engine in its own process) under py-spy, every subprocess
# sampled (raw collapsed stacks, one line per stack with its count, the process in the first
# frame). Summarise here with benchmarks/gpu/pyspy_summary.py.
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/profile_serve_05b.sh   (carry .whl and .pyspy)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .pyspy/*.whl > $OUT/wheels.log 2>&1 || { tail -5 $OUT/wheels.log; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=/tmp/site:$PWD
timeout 400 /tmp/site/bin/py-spy record --subprocesses --idle --rate 200 --format raw -o $OUT/serve05b.pyspy.txt -- python3 benchmarks/gpu/serve_bench.py --only 0.5b --out $OUT > $OUT/profile.log 2>&1; tail -8 $OUT/profile.log
ls -la $OUT
