#!/usr/bin/env bash
# Synthesise the mini_emo corpus into data/{asr,ser}_{train,dev,test} (Kaldi style).
# Options: --seed N, --size default|small|tiny (or explicit counts via --gen_opts "..."), --asr_text closed|open.
set -euo pipefail
seed=0
size=default     # default: ~1 min to generate (2 min with --asr_text open: 4x the ASR training sentences); small: CI-sized; tiny: a smoke test
asr_text=closed  # the ASR sentences: closed (83-word grammar) or open (3,000 words, about a quarter of the test's unseen in training)
gen_opts=        # extra options for espnet_harmonifuse.corpus.mini_emo, e.g. "--asr_train 600"
wav_dir=downloads/mini_emo
. scripts/utils/parse_options.sh
case "${size}" in
    default) sizes=() ;;
    small) sizes=(--asr_train 240 --asr_dev 24 --asr_test 30 --ser_train 200 --ser_dev 24 --ser_test 32) ;;
    tiny) sizes=(--asr_train 24 --asr_dev 8 --asr_test 8 --ser_train 24 --ser_dev 8 --ser_test 8) ;;
    *) echo "local/data.sh: --size must be default, small or tiny" >&2; exit 2 ;;
esac
# The stamp holds the signature of the corpus (every utterance's spec): the generator keeps data/ if
# it is the corpus these options give, and regenerates it otherwise (also after a change of its defaults).
python3 -m espnet_harmonifuse.corpus.mini_emo --wav_dir "$(pwd)/${wav_dir}" --data_dir data \
    --seed "${seed}" --asr_text "${asr_text}" --nj 2 "${sizes[@]}" ${gen_opts} --stamp data/.mini_emo.done
