#!/usr/bin/env bash
# Prepare data/iemocap_{train,dev,test}_fold${fold} and data/librispeech_<set> (Kaldi style) from
# the corpus paths in db.sh. The logic is in espnet_harmonifuse.data.{iemocap,librispeech}.
set -euo pipefail
fold=5           # IEMOCAP test session (1-5); the other four sessions train.
dev_ratio=0.1    # Random share (per label, seeded) of the IEMOCAP training utterances used as dev.
seed=0           # Seed of the IEMOCAP dev split.
librispeech_sets=train-clean-100,dev-clean,test-clean,test-other # LibriSpeech subsets (comma list).
lowercase=false  # Lower-case the LibriSpeech transcripts (true/false).
. scripts/utils/parse_options.sh
. ./db.sh

die() { echo "local/data.sh: ERROR: $*" >&2; exit 1; }
check_root() {  # check_root <variable name> <what it must hold>
    local name=$1 value=${!1:-}
    [ -n "${value}" ] || die "${name} is not set: edit $(pwd)/db.sh and set ${name}= to ${2}"
    [ -d "${value}" ] || die "${name}=${value} (from $(pwd)/db.sh) is not a directory; set ${name}= to ${2}"
}
check_root IEMOCAP "the IEMOCAP_full_release dir (holding Session1 ... Session5)"
check_root LIBRISPEECH "the LibriSpeech dir (holding ${librispeech_sets//,/, })"
_sessions=false
for _d in "${IEMOCAP}"/Session[1-5] "${IEMOCAP}"/IEMOCAP_full_release/Session[1-5]; do
    [ -d "${_d}" ] && _sessions=true
done
if [ "${_sessions}" = false ]; then
    die "IEMOCAP=${IEMOCAP} (from $(pwd)/db.sh) holds no Session1 ... Session5 dirs; set IEMOCAP= to the IEMOCAP_full_release dir"
fi

_lc=(); [ "${lowercase}" = true ] && _lc=(--lowercase)
python3 -m espnet_harmonifuse.data.iemocap --root "${IEMOCAP}" --data_dir data --fold "${fold}" \
    --dev_ratio "${dev_ratio}" --seed "${seed}" \
    || die "IEMOCAP preparation failed (see above); check IEMOCAP in $(pwd)/db.sh"
python3 -m espnet_harmonifuse.data.librispeech --root "${LIBRISPEECH}" --data_dir data \
    --sets "${librispeech_sets}" "${_lc[@]}" \
    || die "LibriSpeech preparation failed (see above); check LIBRISPEECH in $(pwd)/db.sh"
echo "local/data.sh: data/iemocap_{train,dev,test}_fold${fold} and data/librispeech_* are ready"
