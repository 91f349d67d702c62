# Environment for the recipes (sourced by harmonifuse.sh). espnet and espnet-harmonifuse are
# pip-installed (pip install -e <repo root> for a checkout), so there is nothing else to source.
export PYTHONIOENCODING=UTF-8
export LC_ALL=C
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# A checkout that is not pip-installed: make the plugin importable from the repo root.
MAIN_ROOT=${MAIN_ROOT:-$(cd "${PWD}/../../.." 2>/dev/null && pwd)}
if [ -d "${MAIN_ROOT}/espnet_harmonifuse" ]; then
    export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
fi
