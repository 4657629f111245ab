"""Training: one run from its config to its learning curve in the store.

config.py      RunConfig: everything that defines one run (its hash is the run id), `describe` (the runs-table
               columns known before training, the effective peak LR among them)
model.py       the decoder-only Transformer, two families: gpt2 (Kaplan's) and llama (RMSNorm, SwiGLU, rotary)
fused_loss.py  the fused, chunked unembedding + cross-entropy (the logits never exist in full)
trainer.py     trains one run as named steps around a TrainState: AdamW/Adafactor, evaluations, the fault policy,
               DDP, the cooldown branches of a warm-up-stable-decay run
schedule.py    learning-rate schedules (cosine; warm-up-stable-decay) and evaluation steps (no torch)
checkpoint.py  the checkpoint format: the TrainState behind a SHA-256 header, written atomically
recorder.py    the one place a run writes its row, its curve and its outcome to the store
grouped.py     trains small runs of one shape together as one batched model, each its own run, through the
               trainer's own steps
noise_scale.py the gradient noise scale estimator (McCandlish et al. 2018)
_runtime.py    process-level tuning (the allocator), the machine's memory, what precision it computes fast

The package is named apart from the API verb `scalinglab.train` (= `training.trainer.train_run`): importing a
subpackage sets it as an attribute of its parent, which would shadow the verb.
Only trainer.py, grouped.py, model.py, fused_loss.py, noise_scale.py and checkpoint.py import torch; config.py,
recorder.py and schedule.py do not (a study's driver plans and registers runs with them).
"""
