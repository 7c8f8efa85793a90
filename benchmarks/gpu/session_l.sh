# H100 run L: where TTFT and a decode step go (profile_steps.py); W3 dense prefill on vs off.
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
timeout 200 python3 benchmarks/gpu/profile_steps.py --out $OUT/profile.json > $OUT/profile.log 2>&1; tail -60 $OUT/profile.json
timeout 70 python3 $R W3 --out $OUT >> $OUT/bench.log 2>&1; grep -E 'ttft' $OUT/W3.json
timeout 70 python3 $R W3 --out $OUT --tag nodense --backend-attr dense_prefill=false >> $OUT/bench.log 2>&1; grep -E 'ttft' $OUT/W3-nodense.json
tail -3 $OUT/profile.log $OUT/bench.log
