"""One training loop (set-up, device splits, autocast, batches, resumable state) and what each
trainer adds to it: the fusion Trainer and the CILP stage trainers, with their configs."""
