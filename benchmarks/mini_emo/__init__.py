"""The HarmoniFuse benchmark on mini_emo: systems x seeds x data sizes on the recipe's data.

Run from egs2/mini_emo/harmonifuse1 (``../../../benchmarks/mini_emo/benchmark.sh`` sets PYTHONPATH).

Modules:
    run: the CLI: plans and runs every (size, system, seed), resumable; ``python -m benchmarks.mini_emo.run``.
    plan: the systems, sizes and run dirs; which runs are done or stale.
    prepare: the formatted data, low-data subsets, tokenizer and shape files of each size.
    runners: train, decode, score and record one run.
    subsets: deterministic, stratified low-data subsets of Kaldi data dirs.
    espnet_baselines: ESPnet's own ASR (asr_train/asr_inference) and classification
        (cls_train/cls_inference) peers, through ESPnet's entry points.
    pocketsphinx_decode: pocketsphinx's pretrained en-us model over a wav.scp.
    table: the markdown results table (mean ± std over seeds) and the layer-weight plot.
Configs: conf/ (budget.yaml: the fixed budget on the recipe's conf/train.yaml; one override per system).
"""
