"""The package namespace: lazy (``import jaxreg`` imports no jax), and every exported name is what it says."""

import subprocess
import sys

import jaxreg as jr


def test_import_jaxreg_imports_no_jax_and_names_resolve_on_first_use():
    code = ("import sys, jaxreg as jr; assert 'jax' not in sys.modules; f = jr.dropout; "
            "assert 'jax' in sys.modules and callable(f)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_functions_named_like_their_modules_stay_functions_after_the_module_is_imported():
    import jaxreg.conv  # noqa: F401 - the import system binds the submodule on the package...
    import jaxreg.drop_block  # noqa: F401
    from jaxreg.drop_block import drop_block

    assert jr.drop_block is drop_block and callable(jr.conv)  # ...but the exported names stay the functions
    assert all(callable(getattr(jr, name)) or isinstance(getattr(jr, name), type) for name in jr.__all__)
    assert jr.norm.to_flax_batch_stats is jr.to_flax_batch_stats  # any submodule is reachable as an attribute
