# Where the 0.5B shape's host time goes (issue 20): serve_bench's 0.5B part (offline engine,
# then `anyware serve` with the engine in its own process) under py-spy, every subprocess
# sampled (raw collapsed stacks, one line per stack with its count, the process in the first
# frame; --nonblocking: py-spy does not pause the processes it samples), summarised there with
# benchmarks/gpu/pyspy_summary.py (the raw file is too large to bring back).
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/profile_serve_05b.sh   (carry .whl and .pyspy)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .pyspy/*.whl > $OUT/wheels.log 2>&1 || { tail -5 $OUT/wheels.log; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
export PYTHONPATH=/tmp/site:$PWD
timeout 400 /tmp/site/bin/py-spy record --subprocesses --threads --nonblocking --rate 50 --format raw -o $OUT/serve05b.pyspy.txt -- python3 benchmarks/gpu/serve_bench.py --only 0.5b --out $OUT > $OUT/profile.log 2>&1; tail -8 $OUT/profile.log
python3 benchmarks/gpu/pyspy_summary.py $OUT/serve05b.pyspy.txt --top 30 --json $OUT/serve05b-pyspy-summary.json > $OUT/serve05b-pyspy-summary.txt; grep '^==' $OUT/serve05b-pyspy-summary.txt | sort -t: -k3 -n -r | head -20
rm -f $OUT/serve05b.pyspy.txt
ls -la $OUT
