"""Evaluation (step ``evaluate``, :mod:`lgsid.steps.evaluate`): reproduce the paper's tables, beside honest baselines, on whatever data the pipeline ran on.

Sections (each present in ``metrics.json`` or recorded as ``{"skipped": "<reason>"}``):

* ``geo`` — geo-awareness of every item_embeddings model version, with neighbour distances and a
  geographic-oracle row (Table 3, Fig. 3);
* ``codebook`` — codebook health and a map of each compared tokenizer (Fig. 4, Fig. 5);
* ``generative`` — next-item baselines (popularity, user history, history + nearby popularity,
  SASRec-style) and TIGER-style generative retrieval over SIDs with its decoding levers,
  Hit/NDCG@5/10 overall and on revisit / new targets (Table 2);
* ``discriminative`` — DIN-style CTR, ID only vs ID + SIDs, AUC on uniform and exposure-like negatives (Table 1).

Modules: :mod:`~lgsid.evaluate.variants` (the compared tokenizers: in-process refits, and the
registered candidate's own codes), :mod:`~lgsid.evaluate.sections` (the I/O-free sections and
:func:`~lgsid.evaluate.sections.evaluate_frames`), :mod:`~lgsid.evaluate.io` (Delta reads and the
candidate's codes), the models (:mod:`~lgsid.evaluate.tiger`,
:mod:`~lgsid.evaluate.din`, :mod:`~lgsid.evaluate.baselines`) and the metrics
(:mod:`~lgsid.evaluate.ranking`, :mod:`~lgsid.evaluate.geo`). Importing this package imports none of them.
"""

from __future__ import annotations

