# Local paths of the corpora (sourced by local/data.sh). Leave a corpus empty if it is not used.
# mini_emo needs none: its corpus is synthesised with espeak-ng.

# IEMOCAP release directory, holding Session1 ... Session5 (licensed from USC SAIL).
IEMOCAP=
# LibriSpeech directory, holding train-clean-100/, dev-clean/, test-clean/, ... (openslr.org/12).
LIBRISPEECH=
