# GPU run for issue 20 (the server under load): one H200, < 9 minutes.
#   ANYWARE_COMMIT=<commit> bash benchmarks/gpu/serve_bench.sh
# 0.5B shape (qwen2.5-0.5b preset) 1000 x 512/256 all at once: offline engine vs server, device
# busy fraction; then the 8B shape (llama-3.1-8b preset) 500 x 1024/1024 all at once (the issue
# asks for 1000: cut to 500 to fit the 9-minute budget; 500 > --max-running-requests 256 keeps
# it saturated), TTFT p99 at 1 req/s (30 requests) and at 70% of the measured saturation rate
# (150 requests). Results: $OUT/serve_bench.json, $OUT/{0.5b,8b}.json, logs.
# first (setup.sh imports anyware): the engine-process transport (pyzmq, msgspec) and the HTTP client (httpx); the device has no
# network: wheels from a carried .wheels/ folder, made here with
#   pip download --only-binary=:all: --python-version 3.1X --platform manylinux_2_28_x86_64 \
#       -d .wheels pyzmq msgspec httpx httpcore h11 anyio sniffio certifi idna
python3 -c "import zmq, msgspec, httpx" 2>/dev/null || python3 -m pip install -q --no-index --find-links .wheels pyzmq msgspec httpx
source benchmarks/gpu/setup.sh > $OUT/setup.log 2>&1; tail -3 $OUT/setup.log
export PYTHONPATH=$PWD
timeout 560 python3 benchmarks/gpu/serve_bench.py --out $OUT "$@" 2>&1 | tee $OUT/serve_bench.log | tail -20
