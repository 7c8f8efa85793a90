# Sourced at the start of every device run: install the working tree (no network there).
# the device copy has no .git: record the commit the run was made from, if given
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT to the commit the run is made from}"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
anyware platforms
