"""Feature metrics for SAEs (SAEBench algorithms, spec ``sae-training-and-metrics.md`` §5-9).

Modules: ``data`` (labelled texts, spelling prompts), ``activations`` (model residuals, cached once per layer and
dataset), ``probes`` (linear probes), ``geometry`` (max-cosine, distinct features), ``composition`` (meta-SAE),
``absorption``, ``scr_tpp``, ``sparse_probing`` and ``compare`` (table + figures). Every metric takes an object with
``encode``, ``decode``, ``W_enc`` [d, m] and ``W_dec`` [m, d] working on raw activations.
"""
