"""torch's launcher (`python -m torch.distributed.run`) as `gan-tui train --nproc-per-node`
starts it: the same launcher and flags, but a rank that fails ends it with one line
("rank 1 was killed by SIGKILL ...") instead of the launcher's own traceback of
ChildFailedError. The rank's own output has said what went wrong by then, if anything.

    python -m gan_tui.torchrun --nproc-per-node 2 --standalone -m gan_tui train ...
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun_main


def describe_failure(error: ChildFailedError) -> str:
    """'rank 1 was killed by SIGKILL' or 'rank 0 exited with code 3' (the first to fail)."""
    rank, failure = error.get_first_failure()
    if failure.exitcode < 0:
        return f"rank {rank} was killed by {failure.signal_name()}"
    return f"rank {rank} exited with code {failure.exitcode}"


def main(argv: list[str] | None = None) -> int:
    try:
        torchrun_main(argv)
    except ChildFailedError as error:
        print(f"gan-tui: {describe_failure(error)}, so torch's launcher stopped the other "
              "ranks; the run folder keeps its last checkpoint (resume with --resume)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
