"""Bring versions registered before signed bundles up to date: `clinrisk models upgrade`.

Each version without a scorer bundle is loaded once from its pickle (an operator's trusted
action, never the service's), converted, verified on the spec's data file and signed; the
current champion also gets a signed promotion record, so the service keeps serving it.
"""

from __future__ import annotations

from typing import Any

from clinrisk import bundle, promotion, registry, signing
from clinrisk.errors import ClinriskError
from clinrisk.serving.scorer import load_verification_data
from clinrisk.settings import Settings


def upgrade_version(settings: Settings, name: str, version: str, key: bytes) -> str:
    """Sign one version's bundle if it has none; returns what was done."""
    run_id = registry.version_run_id(settings, name, version)
    if bundle.META_FILE in registry.bundle_files(settings, run_id):
        return "already bundled"
    model = registry.load_version(settings, name, version)
    rows, where = load_verification_data(model.spec)
    if rows is None:
        raise ClinriskError(f"cannot verify {name} version {version}: {where}")
    files = bundle.build_bundle(model, rows[model.spec.feature_names], run_id, key)
    registry.log_bundle(settings, run_id, files)
    return "bundled" if bundle.ONNX_FILE in files else "refused by ONNX (stored with the reason)"


def upgrade(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Bundle every version of `name`; sign the current champion's promotion if it lacks one."""
    key = signing.ensure_key(settings)
    champion = registry.alias_version(settings, name, registry.CHAMPION)
    done = []
    for row in registry.list_versions(settings, name):
        version = row["version"]
        entry = {"version": version, "bundle": upgrade_version(settings, name, version, key)}
        if version == champion and bundle.PROMOTION_TAG not in registry.version_tags(settings, name, version):
            promotion.sign_promotion(
                settings, name, version, how="upgrade", reason="signed by `models upgrade`"
            )
            entry["promotion"] = "signed"
        done.append(entry)
    return done
