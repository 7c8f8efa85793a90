# The start of a device session script (sourced; ANYWARE_COMMIT set by the caller): install
# the working tree (setup.sh, its log in /tmp/setup.log), put it on PYTHONPATH, install the
# carried msgspec wheel when .whl travelled, then the run helpers (runlib.sh) with their logs
# in /tmp, so a call's returned files are only the results.
export ANYWARE_COMMIT="${ANYWARE_COMMIT:?set ANYWARE_COMMIT}" PYTHONUNBUFFERED=1
source benchmarks/gpu/setup.sh > /tmp/setup.log 2>&1; tail -2 /tmp/setup.log
export PYTHONPATH=$PWD
[ -d .whl ] && python3 -m pip install -q --no-index --no-deps .whl/msgspec-*.whl > /dev/null 2>&1
RUN_LOGS=/tmp
source benchmarks/gpu/runlib.sh
