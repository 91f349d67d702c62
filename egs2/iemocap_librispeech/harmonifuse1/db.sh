# Local paths of the corpora (sourced by local/data.sh). Set both before running ./run.sh.
#
# IEMOCAP: the extracted release (licensed from USC SAIL, sail.usc.edu/iemocap), laid out as
#     ${IEMOCAP}/Session1 ... Session5/
#         sentences/wav/<dialog>/<utt>.wav          e.g. Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav
#         dialog/EmoEvaluation/<dialog>.txt         e.g. Session1/dialog/EmoEvaluation/Ses01F_impro01.txt
# i.e. IEMOCAP=/path/to/IEMOCAP_full_release
IEMOCAP=
#
# LibriSpeech (openslr.org/12), the extracted LibriSpeech/ dir holding the subsets:
#     ${LIBRISPEECH}/train-clean-100/ dev-clean/ test-clean/ test-other/
#         <set>/<spk>/<chapter>/<spk>-<chapter>.trans.txt and <set>/<spk>/<chapter>/<uttid>.flac
# i.e. LIBRISPEECH=/path/to/LibriSpeech
LIBRISPEECH=
