"""`yzt demo`: the main job on the bundled sample county, end to end, with embedded storage.

check (入库质检) → ingest → analyse (预判, 去重, 规划冲突) → indicators → 绩效自评表 → charts.
Each step is the same command a bureau runs by hand; the demo only chains them and says where the
results are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

import data as data_package

SAMPLE = Path(data_package.__file__).resolve().parent / "sample"
TARGETS = Path(data_package.__file__).resolve().parent / "targets.sample.yaml"


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out/sample"),
              show_default=True, help="folder for the store and the reports (replaced)")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=SAMPLE / "manifest.yaml",
              show_default=True, help="region manifest (default: the bundled 样例县)")
@click.option("--targets", type=click.Path(dir_okay=False, path_type=Path), default=TARGETS,
              show_default=True, help="绩效自评表 targets and weights")
@click.pass_context
def demo(ctx, out_dir: Path, manifest: Path, targets: Path):
    """Run the whole job on the sample county: check, ingest, analyse, indicators, self-evaluation."""
    root = ctx.find_root().command
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "store.gpkg"
    if store.exists():
        store.unlink()  # the demo starts from an empty store every time
    charts = out_dir / "charts"
    shutil.rmtree(charts, ignore_errors=True)

    def step(title: str, name: str, *args: str):
        click.secho(f"\n== {title}: yzt {name} {' '.join(args)}", bold=True)
        command = root.get_command(ctx, name)
        command.main(list(args), standalone_mode=False, prog_name=f"yzt {name}")

    check = root.get_command(ctx, "check")
    click.secho(f"== 入库质检: yzt check {manifest}", bold=True)
    try:
        check.main([str(manifest)], standalone_mode=False, prog_name="yzt check")
    except SystemExit as exc:  # findings of severity error → exit 1; the demo goes on to show the rest
        if exc.code not in (0, 1, None):
            raise
    step("入库", "ingest", str(manifest), "--store", str(store), "--no-progress")
    step("预判与冲突分析", "analyse", "--store", str(store))
    step("指标 (乡镇)", "indicators", "--store", str(store), "--level", "township", "--format", "md",
         "--out", str(out_dir / "indicators.md"))
    # every report below comes from the run just stored: one run id behind every number
    from layers.store import open_store

    from ..jobs.indicators import load_run

    run_id = load_run(open_store(store)).run_id
    step("指标 (xlsx)", "indicators", "--store", str(store), "--format", "xlsx", "--run-id", run_id,
         "--out", str(out_dir / "indicators.xlsx"))
    step("绩效自评表", "selfeval", "--store", str(store), "--targets", str(targets), "--format", "xlsx",
         "--run-id", run_id, "--out", str(out_dir / "selfeval.xlsx"))
    step("绩效自评表 (md)", "selfeval", "--store", str(store), "--targets", str(targets), "--format", "md",
         "--run-id", run_id, "--out", str(out_dir / "selfeval.md"))
    step("图表", "charts", "--store", str(store), "--run-id", run_id, "--out", str(charts))
    click.secho("\n== done", bold=True)
    click.echo(f"store:        {store}")
    click.echo(f"indicators:   {out_dir / 'indicators.md'}, {out_dir / 'indicators.xlsx'}")
    click.echo(f"self-eval:    {out_dir / 'selfeval.md'}, {out_dir / 'selfeval.xlsx'}")
    click.echo(f"charts:       {charts}/")
    click.echo(f"serve it:     .venv/bin/yzt serve --store {store}   (then open http://localhost:8000/)")
