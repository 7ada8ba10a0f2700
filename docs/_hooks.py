"""Build hook: serve the benchmark plots from ``benchmarks/results/`` without copying them into ``docs/``."""

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{png.name}", abs_src_path=str(png)))
    return files


def _cli_reference() -> str:
    """Markdown tables of every command and option of the ``tsimpute`` command line, from its help texts."""
    import click
    import typer

    from tsimpute.cli import app

    group = typer.main.get_command(app)
    out = []
    for name, command in group.commands.items():
        out += [f"## `tsimpute {name}`", "", (command.help or "").strip(), ""]
        args = [p for p in command.params if isinstance(p, click.Argument)]
        if args:
            out.append("Arguments: " + ", ".join(f"`{p.name.upper()}`" for p in args) + ".")
            out.append("")
        out += ["| option | default | meaning |", "|---|---|---|"]
        for p in (p for p in command.params if isinstance(p, click.Option)):
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            default = "" if p.default is None or callable(p.default) else f"`{p.default}`"
            help_text = (getattr(p, "help", None) or "").replace("|", "\\\\|")
            out.append(f"| {names} | {default} | {help_text} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", _cli_reference())
    return markdown
