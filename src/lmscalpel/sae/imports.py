"""Released SAEs (SAELens folders, Goodfire ``.pth``, Gemma Scope ``params.npz``) as project SAE directories.

One ``sae.imports`` entry becomes ``results/<run>/sae/<id>/`` (``cfg.json`` + ``sae_weights.safetensors``, written by
:func:`save_sae`), so the reasoning and steering stages read released and trained SAEs the same way. Hub files are
downloaded only when the import job runs, never while Snakemake plans.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lmscalpel.sae.base import SparseAutoencoder
from lmscalpel.sae.saelens_format import (CFG_FILENAME, WEIGHTS_FILENAME, _load_gemma_scope, _load_goodfire,
                                          _load_saelens, hook_name, parse_hook_name, save_sae)

log = logging.getLogger(__name__)

FORMATS = ("saelens", "goodfire", "gemmascope")


def _key(spec: dict[str, Any], field: str) -> str:
    return f"config key sae.imports[id={spec['id']}].{field}"


def is_local_source(source: str) -> bool:
    """A filesystem path (absolute, ./, ../, ~ or existing) rather than a hub repo id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


def locate(spec: dict[str, Any]) -> Path:
    """The SAE on this machine: ``source/path`` for a local source, else the hub files (downloaded now)."""
    source, inner, fmt = spec["source"], (spec.get("path") or "").strip("/"), spec["format"]
    if is_local_source(source):
        location = Path(source).expanduser() / inner if inner else Path(source).expanduser()
        if not location.exists():
            raise FileNotFoundError(f"{_key(spec, 'source')}: {location} does not exist")
        return location
    if fmt != "saelens" and not inner:
        raise ValueError(f"{_key(spec, 'path')}: name the {fmt} file inside the hub repo {source}")
    from huggingface_hub import hf_hub_download

    names = [f"{inner}/{name}" if inner else name for name in (CFG_FILENAME, WEIGHTS_FILENAME)] \
        if fmt == "saelens" else [inner]
    files = [Path(hf_hub_download(repo_id=source, filename=name, revision=spec.get("revision"))) for name in names]
    log.info("downloaded %s@%s: %s", source, spec.get("revision") or "main", ", ".join(map(str, files)))
    return files[0].parent if fmt == "saelens" else files[0]


def read_released(location: Path, spec: dict[str, Any]) -> SparseAutoencoder:
    """Read ``location`` with the reader of ``spec['format']`` (an SAE on raw activations)."""
    fmt, scale = spec["format"], spec.get("activation_scale")
    if fmt not in FORMATS:
        raise ValueError(f"{_key(spec, 'format')}: {fmt!r} is not one of {FORMATS}")
    if fmt != "saelens" and scale is not None:
        raise ValueError(f"{_key(spec, 'activation_scale')}: only SAELens files declare a scale; leave it null")
    if fmt == "goodfire":
        return _load_goodfire(location)
    if fmt == "gemmascope":
        return _load_gemma_scope(location if location.is_file() else location / "params.npz")
    try:
        return _load_saelens(location, scale)
    except ValueError as err:
        if "activation_scale" in str(err):
            raise ValueError(f"{_key(spec, 'activation_scale')}: {err}") from err
        raise


def declared_layer(spec: dict[str, Any], declared: str | None) -> int:
    """``hook_layer``, checked against the SAE's own ``hook_name`` by hook type: a residual-stream hook maps to the
    block whose output it is (``blocks.{l}.hook_resid_pre`` is the output of block l − 1); other hooks (MLP or
    attention outputs, ``attn.hook_z``, the MLP input) are refused, since imports feed residual-stream stages."""
    layer = int(spec["hook_layer"])
    if not declared:
        return layer
    try:
        block, hook = parse_hook_name(declared)
    except ValueError as err:
        raise ValueError(f"{_key(spec, 'source')}: {err}; sae.imports takes residual-stream SAEs") from err
    if hook != "resid_post":
        raise ValueError(f"{_key(spec, 'source')}: the SAE reads {declared!r} ({hook}); sae.imports takes "
                         "residual-stream SAEs")
    if block != layer:
        raise ValueError(f"{_key(spec, 'hook_layer')}: {layer}, but the SAE's hook_name {declared!r} reads block "
                         f"{block}'s output")
    return layer


def import_sae(spec: dict[str, Any], out_dir: str | Path) -> Path:
    """Fetch, read and save one ``sae.imports`` entry in the project's SAE format; returns ``out_dir``.

    The SAE reads the output of block ``hook_layer`` (:func:`declared_layer`); it is saved under the canonical
    ``blocks.{l}.hook_resid_post`` name, the original name kept as ``import_hook_name``, with provenance
    (source, path, revision, format) in ``cfg.json`` metadata.
    """
    location = locate(spec)
    sae = read_released(location, spec)
    declared = sae.metadata.get("hook_name")
    layer = declared_layer(spec, declared)
    metadata = {"sae_id": spec["id"], "layer": layer, "hook": "resid_post", "hook_name": hook_name(layer),
                "import_hook_name": declared, "import_source": spec["source"], "import_path": spec.get("path") or "",
                "import_revision": spec.get("revision"), "import_format": spec["format"]}
    log.info("imported %s (%s, d_in %d, d_sae %d, layer %d)", spec["id"], sae.architecture, sae.d_in, sae.d_sae,
             layer)
    return save_sae(sae, out_dir, metadata)
