"""Training of the bundled tiny FIM model (``model_runtime/bundled/tiny``).

    python -m training.corpus stats|split|pack --out runs/corpus.jsonl.gz
    python -m training.train --out runs/tiny --seed 0 [--corpus FILE] [--resume]
    python -m training.export --checkpoint runs/tiny --out model_runtime/bundled/tiny
    python benchmarks/eval_infill.py --model tiny --json runs/eval.json

Modules: ``corpus`` (which files, the held-out split, the pack), ``samples`` (plain / PSM /
SPM layouts), ``rows`` (packing into fixed-length rows, resumable), ``checkpoint``, ``train``,
``export`` and ``tokenizer``. Nothing here is imported by the runtime or the server.
"""
