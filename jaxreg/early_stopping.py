"""jaxreg.early_stopping: under construction in this change."""

__all__: list[str] = []
