# shellcheck shell=sh
# Sourced by the bench scripts that use OpenBLAS. OpenBLAS 0.3.21 (Debian 12) does not recognise recent Intel
# Xeons (the project machine: family 6 model 207) and falls back to its "Prescott" SSE3 kernels, 4-5x slower than
# its AVX-512 ones. On a CPU with AVX-512 this selects OpenBLAS's SkylakeX kernels unless OPENBLAS_CORETYPE is
# already set (set it to choose another, e.g. OPENBLAS_CORETYPE=Haswell); elsewhere it leaves OpenBLAS's own choice.
# The programs print the kernels in use (openblas_get_corename) where it matters.
if [ -z "${OPENBLAS_CORETYPE+set}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    OPENBLAS_CORETYPE=SkylakeX
    export OPENBLAS_CORETYPE
fi
