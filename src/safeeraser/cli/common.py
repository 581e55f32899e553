"""The command line's shared parts: the app and its sub-apps, the root options, the helpers
every command module uses."""

from __future__ import annotations

import typer

from safeeraser.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Safety unlearning for multimodal LLMs: SafeEraser data, methods (GA/GD/KL/PO/NPO ± PD), metrics (ASR, RR, SARR, ROUGE-L).",
)
data_app = typer.Typer(no_args_is_help=True, help="Make, validate and count SafeEraser-format datasets.")
model_app = typer.Typer(no_args_is_help=True, help="List the model families; build a tiny stand-in of one.")
judges_app = typer.Typer(no_args_is_help=True, help="Compare judges.")


@app.callback()
def root(
    reproducible: bool = typer.Option(
        False,
        "--reproducible",
        help="Pin the CPU kernels' instruction set at AVX2 (torch, MKL, oneDNN) so that an x86-64 CPU with AVX2 or AVX-512 gives the same numbers; the demo does by default (SAFEERASER_REPRODUCIBLE=0 switches that off). Before the command: safeeraser --reproducible unlearn ...",
    ),
) -> None:
    """Safety unlearning for multimodal LLMs."""  # the pin itself is set in main(), before torch loads


app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(judges_app, name="judges")


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"{name} must be positive (got {value})")


def _say(text: str) -> None:
    typer.echo(text, err=True)
