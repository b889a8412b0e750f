"""Safety tune: LoRA SFT that teaches a chat model to refuse harmful requests before the steering stages."""

from lmscalpel.lazy import lazy_exports

_EXPORTS = {"SafetyTuneConfig": "tune", "SafetyTuneGateError": "tune", "safety_tune": "stage"}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
