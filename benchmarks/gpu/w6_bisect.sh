# W6 (qwen2.5-0.5b, 1000 x 512/256) across commits on one machine, then this tree under py-spy.
# Session 11-12 measured 13-14k tok/s where sessions 4 and 6 had 20-27k; the CPU host harness
# (benchmarks/host_steps.py) shows no comparable host-path change, so this looks for the commit.
#   git archive --format=tar.gz -o .ab12/<c>.tar.gz <c> -- . ':!core/assets' ':!docs' \
#       ':!benchmarks/results' ':!tests'                      # for each old commit, here
#   ANYWARE_COMMIT=<sha> bash benchmarks/gpu/w6_bisect.sh C1 C2 ...   (carry .ab12, .whl, .pyspy)
# Each old commit is installed into its own --target directory and runs its own run.py before
# this tree is installed (setup.sh), so no two copies of the package are on one path.
set -u
export PYTHONUNBUFFERED=1
T0=$SECONDS
[ -d .whl ] && python3 -m pip install -q --no-index --no-deps .whl/msgspec-*.whl > /dev/null 2>&1
for c in "$@"; do
  mkdir -p /tmp/src-$c && tar -xzf .ab12/$c.tar.gz -C /tmp/src-$c
  python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/ab-$c \
    /tmp/src-$c > /tmp/install-$c.log 2>&1 || { echo "install $c failed"; tail -3 /tmp/install-$c.log; }
  ( cd /tmp && ANYWARE_COMMIT=$c PYTHONPATH=/tmp/ab-$c timeout 300 \
      python3 /tmp/src-$c/benchmarks/run.py W6 --out $OUT --tag old-$c ) > /tmp/W6-$c.log 2>&1
  echo "[$(( SECONDS - T0 )) s] $c $(python3 benchmarks/gpu/result_line.py $OUT/W6-old-$c.json 2>&1 | tail -1)"
  tail -2 /tmp/W6-$c.log | grep -i error || true
done
source benchmarks/gpu/session_setup.sh
run head W6
python3 -m pip install -q --no-index --no-deps --target /tmp/site .pyspy/*.whl > /dev/null 2>&1
timeout 200 /tmp/site/bin/py-spy record --threads --nonblocking --rate 100 --format raw \
  -o /tmp/w6.pyspy.txt -- python3 benchmarks/run.py W6 --out /tmp --tag pyspy > /tmp/pyspy.log 2>&1
stamp "py-spy run: $(python3 benchmarks/gpu/result_line.py /tmp/W6-pyspy.json 2>&1 | tail -1)"
python3 benchmarks/gpu/pyspy_summary.py /tmp/w6.pyspy.txt --top 60 --json $OUT/W6-pyspy-summary.json \
  > /tmp/pyspy-summary.txt; grep '^==' /tmp/pyspy-summary.txt | head
ls $OUT
