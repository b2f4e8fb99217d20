"""`spkverif export`: a model as TorchScript or ONNX, runnable without spkverif (`spkverif.stages.export`)."""

from __future__ import annotations

import click

from spkverif.cli.options import Option, common_options


@click.command("export")
@click.option(
    "--model", "model_path", required=True, type=click.Path(), help="Model file (models/final.pt) or checkpoint."
)
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    cls=Option,
    registries=("formats",),
    help="[default: onnx for an OUTPUT ending in .onnx, else torchscript]:",
)
@click.argument("output", type=click.Path(dir_okay=False))
@common_options
def command(model_path: str, fmt: str | None, output: str) -> None:
    """Write the model (front end included) as TorchScript or ONNX: waveforms (B, T) in, embeddings (B, D) out.

    TorchScript loads with torch.jit.load (Python) or torch::jit::load (C++); ONNX runs in onnxruntime,
    and `spkverif extract --model model.onnx` runs it without torch. Neither needs spkverif's training code.

    \b
    Example:
      spkverif export --model exp/xvector_aam/models/final.pt exp/xvector_aam/model.onnx
    """
    from spkverif.stages.export import export_model

    export_model(model_path, output, fmt)
