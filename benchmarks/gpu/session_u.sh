# GPU run U (wave 2, session 4): the conformance suite on the CUDA platform and on the ROCm
# plugin's portable path (test-only switch on a CUDA build: not AMD hardware), then the
# kernel tests (incl. the fused-MoE kernel and the toolkit's graphs) in what time is left.
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
export PYTHONPATH=$PWD
timeout 220 anyware conformance --platform cuda --report $OUT/conf-cuda -n 4 > $OUT/conf-cuda.log 2>&1; tail -3 $OUT/conf-cuda.log
ANYWARE_ROCM_ALLOW_CUDA_BUILD=1 timeout 200 anyware conformance --platform rocm --report $OUT/conf-rocm -n 4 > $OUT/conf-rocm.log 2>&1; tail -3 $OUT/conf-rocm.log
rm -f $OUT/conf-*/junit*.xml $OUT/conf-*/*.xml
timeout 100 python3 -m pytest -q -x -p no:cacheprovider tests/kernels -n 4 > $OUT/tests.log 2>&1; tail -4 $OUT/tests.log
ls $OUT $OUT/conf-cuda $OUT/conf-rocm
