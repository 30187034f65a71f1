"""The local web laboratory: `lstmlab serve` (see app.py).

One page (static/) over a thin Starlette layer: train runs and watch their gates learn,
compare and export runs, inspect a trained model, stream into it, and step through one
cell's equations. Every view's data comes from the package functions the CLI and the tests
also call; deleting this folder breaks nothing else."""

from .app import check_address, create_app, serve

__all__ = ["check_address", "create_app", "serve"]
