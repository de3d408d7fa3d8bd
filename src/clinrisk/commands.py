"""Model-core commands: train, predict, promote, rollback, models."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from clinrisk.cli import emit_json, path_option
from clinrisk.settings import load_settings

model_option = click.option("--model", "model_name", default=None, help="Model spec name (default: stroke).")


def _settings_for(model_name: str | None):
    settings = load_settings()
    return settings, model_name or settings.model_name


@click.command()
@path_option("--data", default=None, help="Train on this one file (default: the labelled store).")
@model_option
@click.option("--seed", type=int, default=None, help="Random seed (default: the spec's).")
def train(data: Path | None, model_name: str | None, seed: int | None) -> None:
    """Train on the labelled store (or one file), register a challenger and apply the promotion gate."""
    from clinrisk.retraining import retrain
    from clinrisk.threads import limited

    settings, name = _settings_for(model_name)
    with limited(settings.threads):
        result = retrain(settings, name, data, seed)
    if result.get("skipped"):
        click.echo(f"{name}: nothing trained, {result['skipped']}", err=True)
    else:
        verdict = "promoted to champion" if result["promoted"] else "not promoted"
        click.echo(f"{name} version {result['version']} ({result['candidate']}): {verdict}", err=True)
    emit_json(result)


@click.command()
@path_option("--input", "input_path", required=True, help="CSV or Parquet file to score.")
@path_option("--output", "output_path", required=True, help="Where to write the scored file.")
@model_option
@click.option("--skip-invalid", is_flag=True, help="Write invalid rows to a rejects file instead of failing.")
@path_option("--rejects", "rejects_path", default=None, help="Rejects file (default: OUTPUT.rejects.csv).")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=50_000, show_default=True)
def predict(input_path, output_path, model_name, skip_invalid, rejects_path, chunk_rows) -> None:
    """Score a file with the champion: adds probability, prediction and model_version."""
    from clinrisk.predict import score_file
    from clinrisk.serving.cache import load_champion
    from clinrisk.threads import limited

    settings, name = _settings_for(model_name)
    model, loaded_from = load_champion(settings, name)  # the alias is checked; the bundle may be cached
    with limited(settings.threads):
        report = score_file(
            model,
            model.info["version"],
            input_path,
            output_path,
            chunk_rows=chunk_rows,
            skip_invalid=skip_invalid,
            rejects_path=rejects_path,
        )
    emit_json({**asdict(report), "loaded_from": loaded_from})


@click.command()
@click.argument("version")
@model_option
@click.option("--reason", default="manual promotion", show_default=True)
def promote(version: str, model_name: str | None, reason: str) -> None:
    """Make VERSION the champion, bypassing the gate (recorded as a tag)."""
    from clinrisk import promotion, registry

    settings, name = _settings_for(model_name)
    registry.version_tags(settings, name, version)  # fails clearly for an unknown version
    promotion.promote(settings, name, version, reason=reason)
    emit_json({"model": name, "champion": version, "reason": reason})


@click.command()
@model_option
@click.option("--reason", default="manual rollback", show_default=True)
def rollback(model_name: str | None, reason: str) -> None:
    """Point champion back at the previous champion and record why."""
    from clinrisk import promotion

    settings, name = _settings_for(model_name)
    old, new = promotion.rollback(settings, name, reason=reason)
    emit_json({"model": name, "from_version": old, "champion": new, "reason": reason})


@click.group(invoke_without_command=True)
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def models(ctx: click.Context, model_name: str | None, as_json: bool) -> None:
    """List every model with a spec (kind, objective, champion and its holdout metrics); with
    --model, that model's registered versions with aliases, gate decision and holdout metrics."""
    from clinrisk import registry

    if ctx.invoked_subcommand is not None:
        return
    if model_name is None:
        _list_every_model(as_json)
        return
    settings, name = _settings_for(model_name)
    rows = registry.list_versions(settings, name)
    if as_json:
        emit_json({"model": name, "versions": rows})
        return
    click.echo(
        f"{'version':>7}  {'aliases':<22} {'gate':<11} {'recall':>6} {'prec':>6} {'roc_auc':>7} {'pr_auc':>6}"
        f" {'r2':>6}"
    )
    for r in rows:
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"  # noqa: E731
        click.echo(
            f"{r['version']:>7}  {','.join(r['aliases']):<22} {r['gate']:<11} {fmt(r['recall']):>6} "
            f"{fmt(r['precision']):>6} {fmt(r['roc_auc']):>7} {fmt(r['pr_auc']):>6} {fmt(r.get('r2')):>6}"
        )
        if r.get("gate_precision"):
            click.echo(
                f"{'':>9}gate: precision {r['gate_precision']}, recall {r['gate_recall']}, "
                f"McNemar p {_p_value_text(r['gate_p_value'], r.get('gate_compared_with'))}"
            )
        for reason in r.get("gate_reasons") or []:
            click.echo(f"{'':>9}- {reason}")


def _list_every_model(as_json: bool) -> None:
    from clinrisk.overview import champion_text, model_rows

    rows = model_rows(load_settings())
    if as_json:
        emit_json({"models": rows})
        return
    click.echo(f"{'model':<22} {'kind':<15} {'objective':<36} champion")
    for row in rows:
        click.echo(
            f"{row['name']:<22} {row['kind'] or '-':<15} {row['objective'] or '-':<36} {champion_text(row)}"
        )


def _p_value_text(found: str | None, compared_with: str | None = None) -> str:
    """The gate's p-value tag, or why there is none: a first model has nobody to compare with;
    otherwise the gate stopped before the test (its reasons say why, e.g. too few positives)."""
    if found not in (None, "", "none"):
        return found
    if compared_with in (None, "", "none"):
        return "not run (no champion to compare with)"
    return f"not run (see the reasons; compared with version {compared_with})"


@models.command("upgrade")
@model_option
def models_upgrade(model_name: str | None) -> None:
    """Sign a scorer bundle for every version registered before bundles (loads their pickles once)."""
    from clinrisk.upgrade import upgrade

    settings, name = _settings_for(model_name)
    emit_json({"model": name, "versions": upgrade(settings, name)})


@models.command("keygen")
def models_keygen() -> None:
    """Create the model signing key (0600) if there is none, and print where it is."""
    from clinrisk import signing

    settings = load_settings()
    signing.ensure_key(settings)
    emit_json({"signing_key_file": str(signing.key_path(settings))})


@click.command()
def credentials() -> None:
    """Generate the stack's passwords into CLINRISK_HOME/credentials.env (0600) and print where."""
    from clinrisk.credentials import generate

    settings = load_settings()
    path, added = generate(settings.home)
    click.echo(f"credentials in {path} (compose: `docker compose --env-file {path} up`)", err=True)
    emit_json({"credentials_file": str(path), "generated": added})
