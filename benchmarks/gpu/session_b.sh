# H100 run B: CUDA parity diagnostic, W2 (1000 x 1024/1024), W6 (qwen2.5-0.5b 1000 x 512/256).
source benchmarks/gpu/setup.sh
R=benchmarks/run.py
timeout 120 python3 benchmarks/gpu/parity_diag.py 2>&1 | grep -v -e Writing -e "Loading weights" | tee $OUT/parity_diag.log
timeout 100 python3 $R W6 --out $OUT 2>&1 | tail -22
timeout 330 python3 $R W2 --out $OUT 2>&1 | tail -22
