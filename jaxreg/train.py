"""jaxreg.train: under construction in this change."""

__all__: list[str] = []
