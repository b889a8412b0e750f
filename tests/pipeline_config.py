"""The small configuration the integration tests run through the real DAG (every stage, tiny sizes)."""

from conftest import SMALL_TOYWORLD, TINY_LLAMA

FOUNDATION = {
    "toyworld": {**SMALL_TOYWORLD, "n_people": 40, "n_bios": 1000, "n_reviews": 1000, "n_spelling_words": 120,
                 "n_reasoning_problems": 100},
    "toy_model": {**TINY_LLAMA, "vocab_size": 400, "context_length": 64, "batch_size": 8, "steps": 30,
                  "warmup_steps": 5, "checkpoint_every": 10},
    "model_card": {"max_new_tokens": 8, "n_eval_per_family": 8, "min_refusal_rate": 0.0, "min_benign_compliance": 0.0},
    "cache": {"layers": [1], "context_length": 64, "n_tokens": 4000, "shard_tokens": 2000, "batch_size": 8},
}

STAGES = {
    "sae": {"widths": [128], "ks": [8], "train": {"epochs": 1, "batch_size": 256, "checkpoint_every": 5},
            "ortsae": {"chunk_size": 64}, "eval": {"context_length": 64, "max_sequences": 32}},
    "features": {"absorption": {"f1_gate": 0.0, "min_letters": 1, "prompts_per_word": 1, "probe_epochs": 2,
                                "sparse_epochs": 2, "max_k": 2},
                 "composition": {"steps": 20},
                 "probe": {"epochs": 2},
                 "scr": {"n_values": [2, 5], "train_size": 80, "test_size": 40},
                 "tpp": {"n_values": [2, 5], "train_size": 80, "test_size": 40},
                 "sparse_probing": {"train_size": 80, "test_size": 40}},
    "steering": {"layers": [1], "coefficients": [0.5, 1.0], "prompts": {"max_prompts": 4},
                 "random": {"n_vectors": 2}, "sae": {"n_features": 2},
                 "universal": {"layer": 1, "sweep_vectors": 4, "max_trials": 8, "n_select": 2, "n_universal": 1,
                               "n_baseline": 2},
                 "capability": {"n_vectors": 1, "n_prompts": 4, "arithmetic_max_new_tokens": 16}},
    "reasoning": {"corpus": {"max_tokens": 2000, "context_length": 64},
                  "eval": {"max_problems": 4, "max_new_tokens": 16}, "steering": {"max_features": 1}},
    "pruning": {"patterns": ["2:4", "8:16"], "criteria": ["magnitude"], "mitigations": ["var"],
                "weight_methods": ["magnitude"], "weight_patterns": ["2:4"], "chat_patterns": ["2:4"],
                "perplexity": {"seqlen": 64}, "calibration": {"n_windows": 2, "seqlen": 64},
                "learnable": {"n_windows": 2, "steps": 2}, "zero_shot": {"limit": 4}},
    "unlearning": {"grid": [{"methods": ["ga"], "splits": ["forget10"], "modalities": ["both"], "l1": [False, True]}],
                   "robustness": {"runs": [{"method": "ga", "split": "forget10", "modality": "both", "l1": False}]},
                   "finetune": {"epochs": 1}, "unlearn": {"epochs": 1, "l1": {"lambdas": [0.001]}},
                   "eval": {"max_rows": 4, "max_generate_rows": 2}},
}


def pipeline_config(run_name: str) -> dict:
    return {"run_name": run_name, "stages": [*STAGES, "report"], **FOUNDATION, **STAGES}
