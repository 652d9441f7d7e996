"""The runner (DESIGN §3, §6, §7, §8): executes tasks on plaintexts inside TDX.

Modules: `executor` (one task from verified assignment to signed result: per-task key,
KMS proof checks, decryption, the engine, encryption, value tags; pure, no I/O), `agent`
(the loop: registration, heartbeats, claims, concurrent tasks, submission),
`registration` (quote binding and the NoxRegistry entry), `config` (NOX_RUNNER_*
settings), `server` (`noxctl serve runner`, RunnerService status), `exceptions`.
Import the submodule you need; this package re-exports nothing.
"""
