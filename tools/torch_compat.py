"""Compatibility shim for Debian's python3-torch (1.13) on Python 3.11.

What it is for: `import torch.distributed._shard.checkpoint` (PyTorch DCP, used by the demo and
the integration tests) fails on Debian 12 with

    ValueError: mutable default <class '...TensorProperties'> for field tensor_properties
    is not allowed: use default_factory

because torch 1.13's `sharded_tensor/metadata.py` declares
`tensor_properties: TensorProperties = field(default=TensorProperties())`, and Python 3.11
rejects any default whose class is unhashable (a dataclass with eq=True is).  torch 2.0 fixed it
with a default_factory.

DESIGN: we change no installed file.  `patch()` wraps `dataclasses._get_field` (the per-field
step of @dataclass, looked up as a module global by `_process_class`) so that, for classes that
live in torch modules only, a field whose default is an unhashable dataclass instance named
`TensorProperties` is turned into a `default_factory` returning a copy of that default -- which is
exactly what torch 2.0 does.  Every other field goes through the original function untouched.

Usage (before importing torch.distributed._shard.checkpoint):

    import sys; sys.path.insert(0, "<repo>/tools")
    import torch_compat; torch_compat.patch()

`patch()` is idempotent and a no-op on Python < 3.11 and on torch >= 2.0.
"""

import copy
import dataclasses
import sys

__all__ = ["patch"]

_MARK = "_tierckpt_torch_compat"


def _torch_major():
    """Major version of the installed torch, or None when it cannot be told without importing it."""
    mod = sys.modules.get("torch")
    version = getattr(mod, "__version__", None) if mod is not None else None
    if version is None:
        try:
            from importlib import metadata
            version = metadata.version("torch")
        except Exception:  # not installed, or no metadata: keep the (narrow) hook
            return None
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return None


def _needs_fix(cls, default):
    """True when `default` is the torch 1.13 TensorProperties() default that 3.11 rejects."""
    if not str(getattr(cls, "__module__", "")).startswith("torch."):
        return False
    dcls = type(default)
    return (dataclasses.is_dataclass(dcls)
            and dcls.__name__ == "TensorProperties"
            and str(dcls.__module__).startswith("torch.")
            and dcls.__hash__ is None)


def patch():
    """Make torch 1.13's DCP importable on Python 3.11.  Returns True when the hook is (now or
    already) installed, False when nothing needed doing.  Call from the main thread, before the
    first import of torch.distributed._shard."""
    orig = dataclasses._get_field
    if getattr(orig, _MARK, False):
        return True
    if sys.version_info < (3, 11):
        return False
    major = _torch_major()
    if major is not None and major >= 2:
        return False

    def _get_field(cls, a_name, a_type, *args, **kwargs):
        f = cls.__dict__.get(a_name, dataclasses.MISSING)
        default = f.default if isinstance(f, dataclasses.Field) else f
        if default is not dataclasses.MISSING and _needs_fix(cls, default):
            # Same as torch 2.0: a fresh copy per instance instead of one shared default.
            factory = lambda d=default: copy.copy(d)  # noqa: E731
            if isinstance(f, dataclasses.Field):
                f.default = dataclasses.MISSING
                f.default_factory = factory
            else:  # a bare `name: T = T()` class attribute
                setattr(cls, a_name, dataclasses.field(default_factory=factory))
        return orig(cls, a_name, a_type, *args, **kwargs)

    setattr(_get_field, _MARK, True)
    _get_field.__wrapped__ = orig
    dataclasses._get_field = _get_field
    return True
