"""Optional dependencies: import one, or say which ``jaxreg`` extra installs it (floor 1)."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

# import name -> distribution name, where they differ
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "tensorflow_datasets": "tensorflow-datasets",
    "orbax.checkpoint": "orbax-checkpoint",
}


def require(module: str, *, extra: str, user: str) -> ModuleType:
    """Import ``module``, or raise an ``ImportError`` that names the extra that installs it.

    Args:
      module: the import name, e.g. ``"matplotlib"``.
      extra: the ``jaxreg`` extra that provides it, e.g. ``"plots"``.
      user: what needs it, for the message (e.g. ``"jaxreg.experiments.plots"``).

    Returns:
      The imported module.

    Raises:
      ImportError: ``"<user> needs <distribution>, which is not installed: pip install 'jaxreg[<extra>]'"``.

    Example:
      >>> from jaxreg._optional import require
      >>> require("math", extra="none", user="this example").sqrt(4.0)
      2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        name = _DISTRIBUTIONS.get(module, module)
        raise ImportError(
            f"{user} needs {name}, which is not installed: pip install 'jaxreg[{extra}]' "
            f"(or 'jaxreg[experiments]' for the whole lab)."
        ) from err
