// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Signatures: strict ecrecover for 65-byte r ‖ s ‖ v signatures.
/// @dev Rejects malleable (high-s) signatures and v outside {27, 28} (0/1 accepted and
/// shifted); returns address(0) when ecrecover fails, which callers treat as "no signer".
library Signatures {
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    function recover(bytes32 digest, bytes calldata sig) internal pure returns (address) {
        if (sig.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 32))
            v := byte(0, calldataload(add(sig.offset, 64)))
        }
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return address(0);
        if (uint256(s) > HALF_N) return address(0);
        return ecrecover(digest, v, r, s);
    }
}
