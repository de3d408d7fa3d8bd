"""Model cards for the web: the served champion's card from memory, any other version's from MLflow."""

from __future__ import annotations

from clinrisk import registry
from clinrisk.card import gate_from_tags, render_html
from clinrisk.errors import RegistryError


class CardNotFound(Exception):
    """The version does not exist, or was registered before cards were written."""


def _missing(exc: RegistryError) -> bool:
    """True when MLflow answered that the version or its card does not exist (not when it is down)."""
    return getattr(exc.__cause__, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _facts(runtime, name: str, version: str) -> tuple[dict, dict, list[str]]:
    slot = runtime.models.get(name)
    loaded = slot.holder.state.loaded if slot is not None else None
    if (
        loaded is not None
        and (loaded.name, loaded.version) == (name, version)
        and "card" in loaded.model.info
    ):
        try:
            found = registry.version_tags(runtime.settings, name, version)
        except RegistryError:
            found = {}
        return loaded.model.info["card"], found, []
    return registry.load_card(runtime.settings, name, version)


def card_html(runtime, name: str, version: str) -> str:
    """The rendered HTML card; CardNotFound or RegistryError when it cannot be had."""
    try:
        facts, tags, aliases = _facts(runtime, name, version)
    except RegistryError as exc:
        if _missing(exc):
            raise CardNotFound(f"{name} version {version} has no model card: {exc}") from None
        raise
    return render_html(facts, version, gate_from_tags(tags), aliases)
