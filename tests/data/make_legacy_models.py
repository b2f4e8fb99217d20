"""Writes tests/data/legacy/*.pt with the code from BEFORE front ends were components.

Run once, from a checkout of that code (commit 68c57c5), and keep the files:

    PYTHONPATH=/path/to/old/checkout python tests/data/make_legacy_models.py tests/data/legacy

Each file is a model file (or a training checkpoint) whose `model` spec holds the
front end's options inside the model's, as that code wrote them, with the
embeddings that code gave for fixed waveforms under `expected` (inputs: the
`torch.manual_seed(7)` draw of `torch.randn(2, samples) * 0.1`) and the fingerprint
that code gave under `fingerprint`; each network was built right after
`torch.manual_seed(i)`, i its place in MODELS. tests/test_frontends.py checks that
today's code loads each one to the same network, embeddings and fingerprint, and
builds the same initial weights from the same seed, bit for bit.
"""

import sys
from pathlib import Path

import torch

from spkverif.models import build_model
from spkverif.models.files import model_fingerprint, model_payload, save_atomic

MODELS = {
    "xvector_8k": ("xvector", {"channels": 16, "stats_channels": 32, "embedding_dim": 8, "num_mel_bins": 24,
                               "dither": 0.5, "sample_rate": 8000}),
    "sinc_tdnn": ("sinc_tdnn", {"channels": 16, "stats_channels": 32, "embedding_dim": 8, "num_filters": 8,
                                "kernel_size": 51, "sinc_channels": [6, 6], "stride": [5, 1, 1], "min_low_hz": 40.0,
                                "waveform_norm": True, "instance_norm": True, "sample_rate": 16000}),
    "ecapa_wespeaker": ("ecapa_tdnn", {"channels": 16, "aggregate_channels": 48, "embedding_dim": 8, "scale": 2,
                                       "se_bottleneck": 8, "attention_bottleneck": 8, "num_mel_bins": 24,
                                       "frontend": "wespeaker_fbank", "res2_passthrough": "last"}),
    "resnet_speechbrain": ("resnet34", {"base_channels": 4, "embedding_dim": 8, "blocks": [1, 1, 1, 1],
                                        "num_mel_bins": 24, "dither": 0.0, "frontend": "speechbrain_fbank"}),
}  # fmt: skip


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for index, (stem, (name, options)) in enumerate(MODELS.items()):
        torch.manual_seed(index)
        model = build_model(name, options).eval()
        torch.manual_seed(7)
        waveforms = torch.randn(2, model.sample_rate) * 0.1
        with torch.no_grad():
            expected = model(waveforms)
        payload = model_payload(model, {"expected": expected, "fingerprint": model_fingerprint(model)})
        if stem == "sinc_tdnn":  # a training checkpoint: the network under model_state, no sample_rate entry
            payload = {"format": "spkverif-train-state", "model": model.spec, "expected": expected,
                       "fingerprint": payload["fingerprint"], "model_state": payload["state_dict"]}  # fmt: skip
        save_atomic(payload, out / f"{stem}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
