"""The training core: the Task interface, the Trainer, the run loop, optimizers, distribution and export."""
