"""The chaos run, long form: `python tests/chaos/run.py --tasks 600 --seconds 900`.

Same harness as tests/chaos/test_chaos.py (see chaos_harness.py), any size; prints the
progress to stderr and the counts to stdout (`--json`: one JSON object), exit status 0 only
if every result decrypted to the reference model's value, none missing, none stored twice,
and every fault was a real SIGKILL followed by a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from chaos_harness import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=600, help="token transfers (tasks)")
    parser.add_argument("--seconds", type=float, default=900.0, help="sending lasts this long")
    parser.add_argument("--faults", type=int, default=0, help="kills (default: 1 per 60 s, >= 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--store-url", default=None, help="gateway DB (default SQLite)")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep the devnet files here")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    faults = args.faults or max(4, int(args.seconds // 60))
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="nox-chaos-") as tmp:
        outcome = asyncio.run(
            run_chaos(
                args.state_dir or Path(tmp) / "devnet",
                tasks=args.tasks,
                seconds=args.seconds,
                faults=faults,
                seed=args.seed,
                runners=args.runners,
                store_url=args.store_url,
                say=say,
            )
        )
    print(json.dumps(outcome.to_json(), indent=2) if args.json else outcome.summary(), flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
