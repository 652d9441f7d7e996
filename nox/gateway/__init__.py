"""The Handle Gateway: encrypted handle storage, input proofs, operand release, results."""
