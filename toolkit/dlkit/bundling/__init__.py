"""The bundle stage: models, the runtime and a pinned install as one folder or archive for a device."""

from dlkit.bundling.pipeline import BundleResult, bundle, unpack

__all__ = ["BundleResult", "bundle", "unpack"]
