"""Embedded synthetic corpora (espeak-ng based) for the HarmoniFuse recipes."""
