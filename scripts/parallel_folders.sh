#!/usr/bin/env bash
# Like video_per_subfolder.sh, but several subfolders at once (xargs -P): one face timeline per
# subfolder of PARENT, OUTDIR/<name>.mp4, each run's messages in OUTDIR/<name>.log. The runs share the
# detection cache safely (entries are written atomically). Each run gets an equal share of the CPU
# threads (OMP_NUM_THREADS), so N runs do not fight over the cores.
set -euo pipefail

usage() {
    cat >&2 <<'USAGE'
usage: parallel_folders.sh [-j JOBS] PARENT OUTDIR [alignimate faces options...]

Makes OUTDIR/<name>.mp4 for every subfolder <name> of PARENT, JOBS folders at a time (default 2).
Options after OUTDIR go to every `alignimate faces` run.

Environment: SUFFIX=mp4|webm|gif (default mp4); ALIGNIMATE: the command (default alignimate);
OMP_NUM_THREADS: threads per run (default: CPU count / JOBS).
Exit status: 0 when every folder gave a timeline, 1 when some did not.

example: parallel_folders.sh -j 4 ~/Pictures/kids ~/timelines --every week
USAGE
}

jobs=2
if [[ ${1:-} == -j || ${1:-} == --jobs ]]; then
    if [[ $# -lt 2 || ! $2 =~ ^[1-9][0-9]*$ ]]; then
        usage
        exit 2
    fi
    jobs=$2
    shift 2
fi
if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
    usage
    exit 2
fi
parent=$1
outdir=$2
shift 2
export SUFFIX=${SUFFIX:-mp4}
export ALIGNIMATE=${ALIGNIMATE:-alignimate}

if [[ ! -d $parent ]]; then
    echo "parallel_folders.sh: $parent is not a folder" >&2
    exit 2
fi
if ! command -v "$ALIGNIMATE" >/dev/null 2>&1; then
    echo "parallel_folders.sh: '$ALIGNIMATE' not found on PATH (pip install alignimate, or set ALIGNIMATE)" >&2
    exit 2
fi
mkdir -p "$outdir"
cores=$(nproc 2>/dev/null || echo 2)
threads=$((cores / jobs))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((threads > 0 ? threads : 1))}

# One folder: run alignimate with its output in a log; print one line; fail (exit 1) only when no
# timeline was made (alignimate's exit status 1 means some photos were left out, which is fine).
run_one() {
    local dir=$1 outdir=$2
    shift 2
    local name
    name=$(basename "$dir")
    local status=0
    "$ALIGNIMATE" faces "$dir" -o "$outdir/$name.$SUFFIX" "$@" >"$outdir/$name.log" 2>&1 || status=$?
    if [[ $status -le 1 ]]; then
        echo "ok      $name -> $outdir/$name.$SUFFIX"
    else
        echo "FAILED  $name (exit status $status, see $outdir/$name.log)"
        return 1
    fi
}
export -f run_one

status=0
outdir_real=$(cd "$outdir" && pwd -P)
# OUTDIR itself may be a subfolder of PARENT: it holds timelines, not photos.
find "$parent" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -print0 | sort -z |
    while IFS= read -r -d '' dir; do
        [[ $(cd "$dir" && pwd -P) == "$outdir_real" ]] || printf '%s\0' "$dir"
    done |
    xargs -0 -r -I{} -P "$jobs" bash -c 'run_one "$@"' _ {} "$outdir" "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "parallel_folders.sh: some folders failed" >&2
    exit 1
fi
