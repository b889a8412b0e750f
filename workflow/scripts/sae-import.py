from lmscalpel.sae.imports import import_sae
from lmscalpel.workflow import script_context

with script_context(globals(), rule="sae_import") as smk:
    import_sae(smk.params.spec, out_dir=smk.output.cfg.rsplit("/", 1)[0])
