"""The search: spaces, storage, the Optuna study and its workers, fidelity, export."""
