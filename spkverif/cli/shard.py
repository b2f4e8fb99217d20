"""`spkverif shard`: pack a data directory into tar shards for streaming training (`spkverif.stages.shard`)."""

from __future__ import annotations

from typing import Any

import click

from spkverif.cli.options import Option, common_options, default_of, seed_option


def stage() -> Any:
    """The shard stage, imported when the command runs or shows its help."""
    from spkverif.stages import shard

    return shard


@click.command("shard")
@click.argument("data_dir", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--shard-dir", required=True, type=click.Path(file_okay=False), help="Where the .tar shards go.")
@click.option(
    "--shard-size",
    cls=Option,
    default=lambda: stage().SHARD_SIZE,
    help="Bytes a shard (about): 1G, 500M, ...",
)
@seed_option("Seed of the shuffle before packing.", lambda: default_of(stage().shard, "seed"))
@click.option("--resample", is_flag=True, help="Resample audio not at 16 kHz instead of failing.")
@common_options
def command(data_dir: str, out: str, shard_dir: str, shard_size: str, seed: int, resample: bool) -> None:
    """Pack DATA_DIR's utterances into tar shards (WebDataset layout) for streaming training;
    OUT is the data directory with shards.list (`spkverif train --data OUT` reads the shards).

    \b
    Example:
      spkverif shard data/train data/train_shards --shard-dir shards/train --shard-size 1G
    """
    shards = stage()
    shards.shard(data_dir, out, shard_dir, shards.parse_size(shard_size), seed, resample)
