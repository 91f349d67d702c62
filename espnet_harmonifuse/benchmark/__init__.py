"""The HarmoniFuse benchmark (issue 4): systems x seeds x data sizes on a recipe's data.

Modules:
    run: the CLI: plans and runs every (size, system, seed), resumable; ``python -m espnet_harmonifuse.benchmark.run``.
    plan: the systems, sizes and run dirs; which runs are done or stale.
    prepare: the formatted data, low-data subsets, tokenizer and shape files of each size.
    runners: train, decode, score and record one run.
    subsets: deterministic, stratified low-data subsets of Kaldi data dirs.
    espnet_baselines: ESPnet's own ASR (asr_train/asr_inference) and classification
        (cls_train/cls_inference) peers, through ESPnet's entry points.
    pocketsphinx_decode: pocketsphinx's pretrained en-us model over a wav.scp.
    table: the markdown results table (mean ± std over seeds) and the layer-weight plot.
"""
