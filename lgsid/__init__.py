"""LGSID: geography-aware semantic IDs for local-life recommendation (arXiv 2511.14221).

User-facing modules: ``sources`` (demo + check-in import), ``prompts``, ``negatives``, ``pairs``,
``encoder``, ``embed``, ``reward``, ``gdpo``, ``tokenizer``, ``sid_store``, ``registry``,
``evaluate``. Backends live under ``storage/`` (Delta) and ``spark/``.
"""

__version__ = "0.1.0"
