"""What the SAE stage builds, from the validated config: the trained grid (ids, per-layer specs), the imported SAEs,
and the block an SAE id reads, which the features, steering and reasoning plans place their jobs by.

Grid ids: ``layer{L}-{architecture}-w{width}`` and a tag per value the architecture sweeps, as its config class
declares (``lmscalpel.sae.base.swept``, read from the registries' catalog without importing torch), e.g.
``layer{L}-relu-w{width}-l1c{l1}``, ``layer{L}-topk-w{width}-k{k}``, ``layer{L}-ortsae-w{width}-k{k}-g{gamma}``; an
imported SAE keeps its ``sae.imports`` id. ``sae.seeds`` repeats the grid once per seed offset: offset 0 is the run's
SAE (the id above, which steering and reasoning use), offset s > 0 adds ``-s{s}`` (trained by its own job from the
same cache with seed + s, for the architectures of ``sae.seed_architectures``), so that feature metrics have a spread
over seeds.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from lmscalpel.config import config_keys
from lmscalpel.registry import catalog

GRID_ID = re.compile(r"layer(\d+)-")


def architectures() -> dict[str, dict[str, Any]]:
    """The trainable architectures by name: each one's settings by config section and its grid axes."""
    return catalog()["sae_architectures"]


def trained_layers(config: dict[str, Any]) -> list[int]:
    """Layers with an SAE grid: sae.layers, or every cached layer when null."""
    cached = config["cache"]["layers"]
    layers = config["sae"]["layers"] if config["sae"]["layers"] is not None else cached
    missing = sorted(set(layers) - set(cached))
    if missing:
        raise ValueError(f"config key sae.layers: layers {missing} are not cached (cache.layers: {cached})")
    return list(layers)


def grid(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-layer grid entries (without the layer): id suffix, architecture, width and the swept values (the product
    of the architecture's axes, first axis outermost; every other architecture's swept fields None), in
    architecture-major order."""
    sae, known = config["sae"], architectures()
    swept = dict.fromkeys(axis["field"] for entry in known.values() for axis in entry["grid"])
    entries = []
    for arch in sae["architectures"]:
        axes = known[arch]["grid"]
        for width in sae["widths"]:
            for values in itertools.product(*(sae[axis["values"]] for axis in axes)):
                tags = [axis["tag"].format(value) for axis, value in zip(axes, values)]
                entries.append({"architecture": arch, "width": width, **swept,
                                **{axis["field"]: value for axis, value in zip(axes, values)},
                                "suffix": "-".join([arch, f"w{width}", *tags])})
    return entries


def grid_problems(config: dict[str, Any]) -> list[str]:
    """One line per swept value the grid cannot train, naming its key: a value of an axis declared
    ``less_than_width`` (the TopK family's ``ks``) that is not below every width of ``sae.widths``."""
    sae, known = config["sae"], architectures()
    bounded: dict[tuple[str, str], list[str]] = {}
    for arch in sae["architectures"]:
        for axis in known[arch]["grid"]:
            if axis["less_than_width"]:
                bounded.setdefault((axis["values"], axis["field"]), []).append(arch)
    problems = []
    for (key, field), archs in bounded.items():
        for value in sae[key]:
            if narrow := [str(width) for width in sae["widths"] if value >= width]:
                problems.append(f"config key sae.{key}: {value} is not below the width{'s' * (len(narrow) > 1)} "
                                f"{', '.join(narrow)} of sae.widths ({field} of the {', '.join(archs)} SAEs: "
                                f"{field} = width keeps every latent, more cannot be picked)")
    return problems


def grid_suffixes(config: dict[str, Any], seed: int = 0) -> list[str]:
    return [entry["suffix"] for entry in seed_grid(config, seed)]


def seeds(config: dict[str, Any]) -> list[int]:
    """``sae.seeds`` ascending: 0 (the run's SAEs) first, so the first id of an architecture is always seed 0's."""
    return sorted(config["sae"]["seeds"])


def extra_seeds(config: dict[str, Any]) -> list[int]:
    """The seed offsets trained besides the run's own (one training job per layer and offset)."""
    return [seed for seed in seeds(config) if seed != 0]


def seed_architectures(config: dict[str, Any]) -> list[str]:
    """The architectures the extra seeds train: ``sae.seed_architectures`` (null: every one of the grid)."""
    sae = config["sae"]
    chosen = sae["seed_architectures"]
    if chosen is None:
        return list(sae["architectures"])
    if unknown := [arch for arch in chosen if arch not in sae["architectures"]]:
        raise ValueError(f"config key sae.seed_architectures: {unknown} not in sae.architectures "
                         f"({sae['architectures']})")
    return list(chosen)


def seed_grid(config: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """The grid entries trained at a seed offset: all at 0, those of :func:`seed_architectures` at the others."""
    if seed == 0:
        return grid(config)
    return [entry for entry in grid(config) if entry["architecture"] in seed_architectures(config)]


def seed_suffix(seed: int) -> str:
    return f"-s{seed}" if seed else ""


def layer_specs(config: dict[str, Any], layer: int, seed: int = 0) -> list[dict[str, Any]]:
    """Grid entries of one layer with their sae_id: what the training job of that layer (and seed offset)
    receives."""
    return [{**{k: v for k, v in e.items() if k != "suffix"},
             "sae_id": f"layer{layer}-{e['suffix']}{seed_suffix(seed)}"} for e in seed_grid(config, seed)]


def grid_ids(config: dict[str, Any]) -> list[str]:
    """Every SAE id of the trained grid: per layer, seed 0's grid, then each extra seed's."""
    return [spec["sae_id"] for layer in trained_layers(config) for seed in seeds(config)
            for spec in layer_specs(config, layer, seed)]


def replicates(config: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """``{sae_id: (seed 0's id, seed offset)}`` of every SAE (an import is its own seed 0): which SAEs are the same
    grid entry trained from different seeds."""
    found = {spec["sae_id"]: (spec["sae_id"].removesuffix(seed_suffix(seed)), seed)
             for layer in trained_layers(config) for seed in seeds(config)
             for spec in layer_specs(config, layer, seed)}
    return found | {sae_id: (sae_id, 0) for sae_id in imports(config)}


def imports(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``sae.imports`` by id (released SAEs); ids are unique and not ids of the trained grid."""
    found = {}
    for spec in config["sae"]["imports"]:
        if spec["id"] in found:
            raise ValueError(f"config key sae.imports: id {spec['id']!r} is given twice")
        found[spec["id"]] = spec
    clash = sorted(set(found) & set(grid_ids(config)))
    if clash:
        raise ValueError(f"config key sae.imports: ids {clash} are ids of the trained SAE grid; rename them")
    return found


def layer_keys(config: dict[str, Any]) -> dict[str, list[int]]:
    """{config key: the blocks it names} of the SAE stage: each import's hook_layer (sae.layers must be cached
    layers, so cache.layers names them)."""
    return {f"sae.imports.{i}.hook_layer": [spec["hook_layer"]] for i, spec in enumerate(config["sae"]["imports"])}


def sae_ids(config: dict[str, Any]) -> list[str]:
    """Every SAE id (directories results/<run>/sae/<sae_id>/): the trained grid, then the imported SAEs."""
    return grid_ids(config) + list(imports(config))


def arch_ids(config: dict[str, Any], arch: str) -> list[str]:
    """The trained grid's ids of one architecture, in grid order (at each layer seed 0's first)."""
    return [spec["sae_id"] for layer in trained_layers(config) for seed in seeds(config)
            for spec in layer_specs(config, layer, seed) if spec["architecture"] == arch]


def sae_layer(config: dict[str, Any], sae_id: str) -> int:
    """The block an SAE reads: an import's ``hook_layer`` (its id need not name a layer), else the ``layer<L>-``
    that starts a grid id."""
    imported = imports(config).get(sae_id)
    if imported is not None:
        return imported["hook_layer"]
    match = GRID_ID.match(sae_id)
    if match is None:
        raise ValueError(f"SAE id {sae_id!r} is neither in sae.imports nor a grid id (layer<L>-...); cannot place it")
    return int(match.group(1))


def import_id_pattern(config: dict[str, Any]) -> str:
    """Wildcard pattern of the imported ids; matches nothing when there are none."""
    return "|".join(re.escape(sae_id) for sae_id in imports(config)) or "(?!)"


def sae_id_pattern(config: dict[str, Any]) -> str:
    """Wildcard pattern of every SAE id (grid ids start with layer<L>-)."""
    return "|".join([r"layer\d+-[A-Za-z0-9_.-]+", *(re.escape(sae_id) for sae_id in imports(config))])


def train_config(config: dict[str, Any]) -> dict[str, Any]:
    """The sae keys a layer's training reads besides its specs (the grid keys reach it as specs): ``train`` and the
    sections the configured architectures' settings are in (OrtSAE's: batchtopk and ortsae)."""
    known = architectures()
    sections = {s: None for arch in config["sae"]["architectures"] for s in known[arch]["settings"] if s != "train"}
    return config_keys(config["sae"], "train", *sections)


def train_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The model keys a layer's training reads: the model's name for the SAEs' provenance, and the device."""
    return config_keys(config["model"], "source", "id", "gguf", "device")
