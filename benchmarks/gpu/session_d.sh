# H100 run D: attention error by head dim; conformance on CUDA (reports committed).
source benchmarks/gpu/setup.sh
timeout 60 python3 benchmarks/gpu/headdim_check.py 2>&1 | tee $OUT/headdim_check.log
timeout 100 anyware conformance --platform cuda --report $OUT/conf -n 4 2>&1 | tail -12
