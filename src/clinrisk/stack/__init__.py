"""The one-command local stack (`clinrisk up`) and the initialisation it shares with compose."""

from clinrisk.stack.command import up

__all__ = ["up"]
