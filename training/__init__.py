"""Lightning training for worldsim: `worldsim fit` (training.cli), system, data module, callbacks."""
