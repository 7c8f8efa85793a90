# H100 run N (session 3): the "done when" commands as a user runs them.
# pip install -e ".[cuda]" offline (runtime packages the image lacks come as wheels in .whl/),
# then `anyware bench --model llama-3.1-8b --load-format dummy`, `anyware serve --model DIR`
# driven over HTTP (bf16 default, then fp32 with greedy parity against transformers), and the
# host cost per launched op.
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT}" PYTHONUNBUFFERED=1
W=$OUT/work; mkdir -p $W
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
echo "== pip install -e .[cuda] (offline: --no-index --find-links .whl)"
python3 -m pip install --no-index --find-links .whl --no-build-isolation -e ".[cuda]" > $W/install.log 2>&1
echo "rc=$?"; tail -3 $W/install.log
if ! python3 -c "import fastapi, uvicorn, anyware" 2>/dev/null; then
  echo "== fallback: core dependencies resolved from .whl, the [cuda] extra's packages without their deps"
  python3 -m pip install --no-index --find-links .whl --no-build-isolation -e . >> $W/install.log 2>&1; echo "rc=$?"
  python3 -m pip install --no-index --no-deps .whl/flashinfer_python-*.whl .whl/apache_tvm_ffi-*.whl >> $W/install.log 2>&1; echo "rc=$?"
  tail -2 $W/install.log
fi
python3 -m pip list 2>/dev/null | grep -i -E "^(anyware|fastapi|uvicorn|pydantic|triton|torch|transformers|flashinfer-python) "
anyware --version; anyware platforms
echo "== anyware bench --model llama-3.1-8b --load-format dummy"
timeout 300 anyware bench --model llama-3.1-8b --load-format dummy --json $OUT/cli-bench-8b.json > $W/bench-8b.log 2>&1; echo "rc=$?"; tail -25 $W/bench-8b.log
echo "== anyware serve --model DIR (bf16 default)"
timeout 330 python3 benchmarks/gpu/cli_e2e.py --out $W/cli-serve-bf16.json; echo "rc=$?"
cp $W/cli-serve-bf16.json $OUT/
echo "== anyware serve --model DIR --dtype float32, greedy parity vs transformers fp32"
timeout 240 python3 benchmarks/gpu/cli_e2e.py --out $W/cli-serve-fp32.json --parity --serve-arg=--dtype=float32; echo "rc=$?"
cp $W/cli-serve-fp32.json $OUT/
echo "== anyware bench --model DIR"
timeout 120 anyware bench --model /tmp/anyware-llama-1b --json $OUT/cli-bench-1b.json > $W/bench-1b.log 2>&1; echo "rc=$?"; tail -12 $W/bench-1b.log
echo "== launch cost"
timeout 90 python3 benchmarks/gpu/launch_cost.py --out $OUT/launch_cost.json 2>&1 | tail -25
tar czf $OUT/logs.tgz -C $W --exclude='*.json' .
