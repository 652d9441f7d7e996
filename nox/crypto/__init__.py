"""The only place in `nox` that does cryptography (DESIGN §2).

Modules: `hashing` (keccak256), `keys` (secp256k1 enclave keys, addresses), `eip712`
(the envelope digest with precomputed type/domain hashes), `envelope` (sign and
verify-then-parse `SignedEnvelope`), `replay` (seen-nonce caches), `ecies` (DESIGN §5, the
handle as associated data), `exceptions` (typed errors). Import the submodule you need;
this package re-exports nothing so importing one piece stays cheap.
"""
