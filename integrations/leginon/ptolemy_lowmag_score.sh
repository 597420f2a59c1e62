#!/bin/sh
# Leginon external score finder for low-magnification atlases (grid squares), via ptolemy-rt.
#
# Leginon calls:  ptolemy_lowmag_score.sh OUTNAME MRC_PATH GRID_DIR
# and reads OUTNAME: the published Ptolemy JSON (a list of {"vertices", "center", "area",
# "brightness", "score"}, best first). GRID_DIR is accepted and not needed.
# This is `ptolemy lowmag -f json MRC_PATH > OUTNAME`, except that OUTNAME is written
# atomically: it appears complete or not at all.
#
# Environment (all optional):
#   PTOLEMY       the ptolemy command (default: `ptolemy` on PATH, else the .venv of the
#                 ptolemy-rt checkout holding this script)
#   PTOLEMY_ARGS  extra options, e.g. "--models ptolemy-2022 --batchnorm running"
# On failure: ptolemy's exit status (3 bad image, 4 model set, 5 output, ...), one line on
# stderr, and no OUTNAME.
set -u
if [ "$#" -lt 2 ]; then
    echo "usage: $0 OUTNAME MRC_PATH [GRID_DIR]" >&2
    exit 2
fi
outname=$1
mrc=$2
if [ -z "${PTOLEMY:-}" ]; then
    if command -v ptolemy >/dev/null 2>&1; then
        PTOLEMY=ptolemy
    else
        PTOLEMY=$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/ptolemy
    fi
fi
# shellcheck disable=SC2086  # PTOLEMY_ARGS is a list of options
exec "$PTOLEMY" lowmag -f json ${PTOLEMY_ARGS:-} -o "$outname" -- "$mrc"
