# H100 run E: engine parity tests in fp32 on CUDA; W4 / W4Z (radix cache on vs off);
# FlashInfer: install the carried wheels, import, conformance (attention, graphs, engine tiers), W1/W3.
source benchmarks/gpu/setup.sh
export PYTHONPATH=$PWD
R=benchmarks/run.py
ANYWARE_TEST_PLATFORM=cuda timeout 150 python3 -m pytest tests/engine -q -n 4 -p no:cacheprovider 2>&1 | tee $OUT/engine_tests_cuda_fp32.log | tail -8
timeout 150 python3 $R W4 --w4-groups 16 --out $OUT >> $OUT/bench.log 2>&1; grep -E "output_tok_s|speedup" $OUT/W4.json
timeout 90 python3 $R W4Z --w4-groups 8 --out $OUT >> $OUT/bench.log 2>&1; grep -E "output_tok_s|speedup" $OUT/W4Z.json
{
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/flashinfer*.whl .whl/apache*.whl
export PYTHONPATH=$PWD:/tmp/site FLASHINFER_WORKSPACE_BASE=/tmp/fi
timeout 60 python3 -c "import flashinfer; print('flashinfer', flashinfer.__version__)"
anyware platforms
timeout 170 anyware conformance --platform cuda --tiers attention,graphs --report /tmp/conf -n 1 2>&1 | tail -25
} > $OUT/flashinfer.log 2>&1
tail -60 $OUT/flashinfer.log
