"""A torchrun entry point for tests/test_dist.py: `gan-tui ARGS` exactly as
`torchrun -m gan_tui ARGS` runs it, then this rank's weight checksum and step in
$GAN_TUI_TEST_OUT/rank<RANK>.json, so a test can compare the replicas."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from gan_tui import cli, headless

trainers = []


class RecordedTrainer(headless.Trainer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        trainers.append(self)


def checksum(trainer) -> str:
    digest = hashlib.sha256()
    for model in (trainer.generator, trainer.discriminator):
        for name, param in model.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    headless.Trainer = RecordedTrainer
    code = cli.main(sys.argv[1:])
    if trainers:
        trainer = trainers[0]
        out = Path(os.environ["GAN_TUI_TEST_OUT"]) / f"rank{os.environ.get('RANK', '0')}.json"
        out.write_text(json.dumps({"checksum": checksum(trainer), "step": trainer.global_step,
                                   "exit": code}))
    sys.exit(code)
