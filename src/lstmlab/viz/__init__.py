"""Pictures: static figures (matplotlib) of forecasts, gates and training curves."""
