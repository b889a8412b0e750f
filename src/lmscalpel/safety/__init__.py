"""Safety tune: LoRA SFT that teaches a chat model to refuse harmful requests before the steering stages."""

from lmscalpel.lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {"SafetyTuneConfig": "tune", "SafetyTuneGateError": "tune",
                                      "safety_tune": "tune"})
__all__ = ["SafetyTuneConfig", "SafetyTuneGateError", "safety_tune"]
