"""SAELens on-disk format (spec §11): ``cfg.json`` + ``sae_weights.safetensors``, read and written.

Export folds the activation scale and the decoder norms into the weights, so every written SAE takes raw
activations (``normalize_activations: "none"``) and has unit-norm decoder rows; the scale is recorded as
``metadata.lmscalpel_activation_scale``. Import reads SAELens ≥ 6 and pre-6 configs, plus Gemma Scope
``params.npz`` and Goodfire ``.pth`` files, and returns an SAE that works on raw activations.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lmscalpel.io import atomic_path, write_json
from lmscalpel.sae.architectures import SAE_REGISTRY, build_sae
from lmscalpel.sae.base import SparseAutoencoder
from lmscalpel.sae.batchtopk import UNSET_THRESHOLD

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SAE_LENS_VERSION = "6.54.0"  # the format version we write (metadata.sae_lens_version gates the ≥6 reader)

# The architecture that reads a SAELens file of another origin (ours name theirs in lmscalpel_architecture).
_SAELENS_READERS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
_SAELENS_METADATA_KEYS = ("model_name", "hook_name", "hook_head_index", "model_class_name",
                          "model_from_pretrained_kwargs", "prepend_bos", "exclude_special_tokens",
                          "context_size", "dataset_path", "seqpos_slice", "neuronpedia_id",
                          "sae_lens_training_version")
_PRE6_RENAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index",
                 "activation_fn_str": "activation_fn"}


_HOOK_NAMES = {"resid_post": "blocks.{layer}.hook_resid_post", "mlp_in": "blocks.{layer}.ln2.hook_out"}


def hook_name(layer: int, hook: str = "resid_post") -> str:
    """The exported ``metadata.hook_name`` of a cached activation, named for what was cached.

    ``resid_post``: TransformerLens ``blocks.{l}.hook_resid_post``, the output of block l (HF hidden_states[l+1]).
    ``mlp_in``: the MLP's input, the pre-MLP norm's output *with its weight applied*. TransformerLens has no hook
    there (``ln2.hook_normalized`` is before the RMSNorm weight, ``hook_mlp_in`` before the norm), so it is
    exported as ``blocks.{l}.ln2.hook_out``, which TransformerLens refuses rather than reading another activation.
    """
    if hook not in _HOOK_NAMES:
        raise ValueError(f"hook {hook!r}: expected one of {sorted(_HOOK_NAMES)}")
    return _HOOK_NAMES[hook].format(layer=layer)


def parse_hook_name(name: str) -> tuple[int, str]:
    """``(block, hook)`` of the project activation a hook name reads.

    ``blocks.{l}.hook_resid_post`` → (l, resid_post); ``blocks.{l}.hook_resid_pre`` → (l − 1, resid_post), since the
    input of block l is the output of block l − 1; ``blocks.{l}.ln2.hook_out`` → (l, mlp_in). Anything else
    (``hook_resid_pre`` of block 0 = the embeddings, ``hook_resid_mid``, ``hook_mlp_out``, ``attn.hook_z``,
    ``ln2.hook_normalized``, ...) is none of them: ValueError.
    """
    match = re.fullmatch(r"blocks\.(\d+)\.(hook_resid_post|hook_resid_pre|ln2\.hook_out)", name or "")
    if match is None or match.group(2) == "hook_resid_pre" and match.group(1) == "0":
        raise ValueError(f"hook_name {name!r} is not the residual stream after a block "
                         "(blocks.<l>.hook_resid_post, blocks.<l>.hook_resid_pre with l >= 1) "
                         "nor the MLP input blocks.<l>.ln2.hook_out")
    layer, kind = int(match.group(1)), match.group(2)
    if kind == "hook_resid_pre":
        return layer - 1, "resid_post"
    return layer, "resid_post" if kind == "hook_resid_post" else "mlp_in"


@torch.no_grad()
def export_copy(sae: SparseAutoencoder) -> SparseAutoencoder:
    """A copy taking raw activations with unit-norm decoder rows; reconstructions are unchanged."""
    out = copy.deepcopy(sae).float().cpu()
    out.fold_activation_scale()
    out.fold_decoder_norms()
    return out


def save_sae(sae: SparseAutoencoder, directory: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` (each atomically; weights first, so a complete
    ``cfg.json`` implies complete weights). Other files in ``directory`` are left alone."""
    if getattr(sae, "threshold_is_set", True) is False:
        raise ValueError(f"{directory}: not exported. {UNSET_THRESHOLD}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scale = float(sae.activation_scale)
    folded = export_copy(sae)
    tensors = {name: getattr(folded, name).detach().contiguous() for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
    if hasattr(folded, "threshold"):
        tensors["threshold"] = folded.threshold.detach().clone()
    with atomic_path(directory / WEIGHTS_FILENAME) as tmp:
        save_file(tensors, str(tmp))
    write_json(directory / CFG_FILENAME, saelens_config(sae, {**sae.metadata, **(metadata or {})}, scale))
    return directory


def saelens_config(sae: SparseAutoencoder, metadata: dict[str, Any], scale: float) -> dict[str, Any]:
    arch = sae.architecture
    if sae.saelens_architecture is None:
        raise ValueError(f"no SAELens mapping for architecture {arch!r}")
    cfg: dict[str, Any] = {
        "architecture": sae.saelens_architecture, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": bool(sae.cfg.apply_b_dec_to_input),
        "normalize_activations": "none", "reshape_activations": "none", **sae.saelens_fields(),
    }
    meta = {key: None for key in _SAELENS_METADATA_KEYS}
    meta.update(prepend_bos=True, exclude_special_tokens=False, model_class_name="AutoModelForCausalLM",
                model_from_pretrained_kwargs={})
    meta.update(metadata)
    meta.update(sae_lens_version=SAE_LENS_VERSION, lmscalpel_architecture=arch,
                lmscalpel_config=sae.cfg.to_dict(), lmscalpel_activation_scale=scale)
    cfg["metadata"] = meta
    return cfg


# --- import ---

def load_sae(path: str | os.PathLike, activation_scale: float | None = None,
             device: str | None = None) -> SparseAutoencoder:
    """Load an SAE directory (SAELens ≥ 6 or pre-6 ``cfg.json`` + safetensors, Gemma Scope ``params.npz``) or a
    Goodfire ``.pth`` file, as an SAE that works on raw activations.

    ``activation_scale`` is needed only for files written with ``normalize_activations:
    "expected_average_only_in"`` whose scale is not recorded: SAELens does not apply it at run time, so the
    weights expect scaled inputs and the factor must be folded here.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".pth":
        sae = _load_goodfire(path)
    elif (path / "params.npz").exists() and not (path / CFG_FILENAME).exists():
        sae = _load_gemma_scope(path / "params.npz")
    else:
        sae = _load_saelens(path, activation_scale)
    return sae.to(device) if device else sae


def normalise_saelens_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Bring a pre-6 flat config to the ≥ 6 layout (what SAELens' ``handle_pre_6_0_config`` does)."""
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if version and int(str(version).split(".")[0]) >= 6:
        return cfg
    flat = {_PRE6_RENAMES.get(k, k): v for k, v in cfg.items() if k != "metadata"}
    flat.setdefault("apply_b_dec_to_input", True)
    arch = flat.get("architecture", "standard")
    k = (flat.get("activation_fn_kwargs") or {}).get("k")
    if flat.get("activation_fn") == "topk" and k is not None:
        arch, flat["k"] = "topk", k
    norm = flat.get("normalize_activations")
    if isinstance(norm, bool) or norm is None:
        norm = "expected_average_only_in" if norm else "none"
    out = {key: flat[key] for key in ("d_in", "d_sae", "apply_b_dec_to_input", "k",
                                      "rescale_acts_by_decoder_norm") if key in flat}
    out.update(architecture=arch, normalize_activations=norm,
               metadata={key: flat.get(key) for key in _SAELENS_METADATA_KEYS if key in flat})
    return out


def _load_saelens(directory: Path, activation_scale: float | None) -> SparseAutoencoder:
    cfg_path, weights_path = directory / CFG_FILENAME, directory / WEIGHTS_FILENAME
    if not cfg_path.exists() or not weights_path.exists():
        raise FileNotFoundError(f"{directory}: expected {CFG_FILENAME} and {WEIGHTS_FILENAME} (SAELens layout)")
    cfg = normalise_saelens_config(json.loads(cfg_path.read_text()))
    tensors = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    meta = dict(cfg.get("metadata") or {})
    arch = meta.get("lmscalpel_architecture") or _SAELENS_READERS.get(cfg["architecture"])
    if arch is None:
        raise ValueError(f"{cfg_path}: SAELens architecture {cfg['architecture']!r} is not supported "
                         f"(supported: {', '.join(_SAELENS_READERS)})")
    own = dict(meta.get("lmscalpel_config") or {})
    own.update(d_in=int(cfg["d_in"]), d_sae=int(cfg["d_sae"]),
               apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
               **SAE_REGISTRY.lookup(arch).config_from_saelens(cfg))
    sae = build_sae(arch, own)
    _assign(sae, tensors, cfg_path)
    sae.metadata = meta
    if cfg["architecture"] == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
        sae.fold_decoder_norms()  # top-k on pre·‖W_dec,i‖ == top-k after folding the norms into the encoder
    _fold_declared_scale(sae, cfg, activation_scale, cfg_path)
    return sae


def _fold_declared_scale(sae: SparseAutoencoder, cfg: dict[str, Any], scale: float | None, where: Path) -> None:
    norm = cfg.get("normalize_activations", "none")
    if norm == "none":
        return
    if norm != "expected_average_only_in":
        raise NotImplementedError(f"{where}: normalize_activations={norm!r} needs run-time normalisation; "
                                  "only 'none' and 'expected_average_only_in' are supported")
    if scale is None:
        raise ValueError(f"{where}: weights expect activations scaled by an unrecorded factor "
                         "(normalize_activations='expected_average_only_in'); pass activation_scale=")
    with torch.no_grad():
        sae.activation_scale.fill_(scale)
    sae.fold_activation_scale()


def _assign(sae: SparseAutoencoder, tensors: dict[str, torch.Tensor], where: Path | str) -> None:
    expected = {"W_enc": (sae.d_in, sae.d_sae), "W_dec": (sae.d_sae, sae.d_in), "b_enc": (sae.d_sae,),
                "b_dec": (sae.d_in,)}
    if hasattr(sae, "threshold"):
        expected["threshold"] = (sae.d_sae,)
    with torch.no_grad():
        for name, shape in expected.items():
            if name not in tensors:
                raise KeyError(f"{where}: tensor {name!r} missing")
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, expected {shape}")
            getattr(sae, name).copy_(tensors[name])


def _load_gemma_scope(npz_path: Path) -> SparseAutoencoder:
    with np.load(npz_path, allow_pickle=False) as data:
        tensors = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in data.files}
    d_in, d_sae = tensors["W_enc"].shape
    sae = build_sae("jumprelu", {"d_in": int(d_in), "d_sae": int(d_sae), "apply_b_dec_to_input": False})
    _assign(sae, tensors, npz_path)
    sae.metadata = {"source": "gemma-scope params.npz"}
    return sae


def _load_goodfire(pth_path: Path) -> SparseAutoencoder:
    state = torch.load(pth_path, map_location="cpu", weights_only=True)
    tensors = {"W_enc": state["encoder_linear.weight"].float().t(), "W_dec": state["decoder_linear.weight"].float().t(),
               "b_enc": state["encoder_linear.bias"].float(), "b_dec": state["decoder_linear.bias"].float()}
    d_in, d_sae = tensors["W_enc"].shape
    sae = build_sae("relu", {"d_in": int(d_in), "d_sae": int(d_sae), "apply_b_dec_to_input": False})
    _assign(sae, tensors, pth_path)
    sae.metadata = {"source": "goodfire .pth"}
    return sae


@torch.no_grad()
def saelens_roundtrip(sae_dir: str | os.PathLike, sae: SparseAutoencoder, x: torch.Tensor) -> dict[str, Any]:
    """Read the exported SAE back with ``sae_lens.SAE.load_from_disk`` and reconstruct ``x`` (raw activations of
    its hook) with it and with ``sae``: the format contract checked on the run's own SAE and model.

    Returns ``saelens_version``, ``saelens_status`` (``loaded <class>``, ``not installed`` or ``failed: ...``) and,
    when it loaded, ``saelens_max_abs_diff`` / ``saelens_rel_diff`` (max |Δ| over the reconstruction's mean |x̂|).
    A reader failure is recorded, not raised: SAELens is an optional extra and its behaviour is the finding.
    """
    from importlib import metadata

    try:
        import sae_lens
    except ImportError:
        return {"saelens_version": None, "saelens_status": "not installed (pip install 'lmscalpel[saelens]')"}
    version = metadata.version("sae-lens")
    try:
        theirs = sae_lens.SAE.load_from_disk(str(sae_dir), device="cpu")
        got = theirs.decode(theirs.encode(x.float().cpu()))
    except Exception as error:  # any failure of the third-party reader is the result
        return {"saelens_version": version, "saelens_status": f"failed: {type(error).__name__}: {error}"}
    want = sae.to("cpu")(x.to("cpu", sae.dtype))[0].float()
    max_abs = float((got - want).abs().max())
    return {"saelens_version": version, "saelens_status": f"loaded {type(theirs).__name__}",
            "saelens_max_abs_diff": max_abs, "saelens_rel_diff": max_abs / max(float(want.abs().mean()), 1e-12),
            "saelens_tokens": int(x.shape[0])}
