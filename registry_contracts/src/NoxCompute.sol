// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ACL} from "./ACL.sol";
import {NoxRegistry} from "./NoxRegistry.sol";
import {Signatures} from "./Signatures.sol";

/// @title NoxCompute: requests computations on encrypted values (handles).
/// @notice Every op checks operand types and the caller's ACL access, derives its result
/// handles deterministically (DESIGN §5), gives the caller transient access to them and emits
/// one `Operation` event carrying the input and output handles in the op's order; the
/// off-chain pipeline computes the values. Handle = prehandle[0:26] ‖ uint32 chainId (BE) ‖
/// type ‖ version 0, prehandle = first 26 bytes of keccak256(abi.encode(uint8 operator,
/// bytes32[] operands, address noxCompute, address caller, uint256 block.timestamp,
/// uint8 outputIndex)). For PlaintextToEncrypted (operator 0) the single operand is the
/// plaintext as an ABI word, and the type is in the result handle.
/// Input proofs: EIP-712 HandleProof(bytes32 handle,address owner,address app,uint256
/// createdAt) under domain ("NoxCompute", "1", chainId, this), signed by an active gateway
/// of NoxRegistry; proof bytes = owner(20) ‖ app(20) ‖ createdAt(32) ‖ signature(65).
contract NoxCompute {
    uint8 internal constant OP_PLAINTEXT_TO_ENCRYPTED = 0;
    uint8 internal constant OP_ADD = 1;
    uint8 internal constant OP_SUB = 2;
    uint8 internal constant OP_MUL = 3;
    uint8 internal constant OP_DIV = 4;
    uint8 internal constant OP_SAFE_ADD = 5;
    uint8 internal constant OP_SAFE_SUB = 6;
    uint8 internal constant OP_SAFE_MUL = 7;
    uint8 internal constant OP_SAFE_DIV = 8;
    uint8 internal constant OP_SELECT = 9;
    uint8 internal constant OP_EQ = 10;
    uint8 internal constant OP_NE = 11;
    uint8 internal constant OP_LT = 12;
    uint8 internal constant OP_LE = 13;
    uint8 internal constant OP_GT = 14;
    uint8 internal constant OP_GE = 15;
    uint8 internal constant OP_TRANSFER = 16;
    uint8 internal constant OP_MINT = 17;
    uint8 internal constant OP_BURN = 18;

    uint8 internal constant T_BOOL = 0;
    uint8 internal constant T_ADDRESS = 1;
    uint8 internal constant T_MAX = 99;
    uint8 internal constant ROLE_GATEWAY = 3;
    uint256 internal constant PROOF_LENGTH = 137;

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant HANDLE_PROOF_TYPEHASH =
        keccak256("HandleProof(bytes32 handle,address owner,address app,uint256 createdAt)");

    NoxRegistry public immutable registry;
    ACL public immutable acl;
    address public owner;
    uint256 public proofExpirationDuration;

    event Operation(address indexed caller, uint8 indexed operator, bytes32[] inputs, bytes32[] outputs);
    event ProofExpirationDurationUpdated(uint256 newDuration);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error ZeroAddress();
    error InvalidType(uint8 typeCode);
    error UnsupportedType(uint8 operator, uint8 typeCode);
    error TypeMismatch(uint8 operator, bytes32 a, bytes32 b);
    error WrongChain(bytes32 handle);
    error UnsupportedHandleVersion(bytes32 handle);
    error PlaintextOutOfRange(bytes32 plaintext, uint8 typeCode);
    error MalformedProof(uint256 length);
    error HandleTypeMismatch(bytes32 handle, uint8 expectedType);
    error ProofNotYetValid(uint256 createdAt);
    error ProofExpired(uint256 createdAt, uint256 expiredAt);
    error ProofAppMismatch(address app, address caller);
    error ProofOwnerMismatch(address proofOwner, address owner);
    error BadProofSignature();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(NoxRegistry registry_, ACL acl_, address owner_) {
        if (address(registry_) == address(0) || address(acl_) == address(0) || owner_ == address(0)) {
            revert ZeroAddress();
        }
        registry = registry_;
        acl = acl_;
        owner = owner_;
        proofExpirationDuration = 1 hours;
        emit OwnershipTransferred(address(0), owner_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function setProofExpirationDuration(uint256 duration) external onlyOwner {
        proofExpirationDuration = duration;
        emit ProofExpirationDurationUpdated(duration);
    }

    // ------------------------------------------------------------------ input proofs

    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("NoxCompute"), keccak256("1"), block.chainid, address(this))
        );
    }

    /// @notice Validate a gateway's proof that `handle` is an input of `owner_` for the calling
    /// app; on success the app gets transient access to the handle, which is returned.
    function validateInputProof(bytes32 handle, address owner_, bytes calldata proof, uint8 expectedType)
        external
        returns (bytes32)
    {
        _checkHandle(handle);
        if (_typeOf(handle) != expectedType) revert HandleTypeMismatch(handle, expectedType);
        if (proof.length != PROOF_LENGTH) revert MalformedProof(proof.length);
        address proofOwner = address(bytes20(proof[0:20]));
        address app = address(bytes20(proof[20:40]));
        uint256 createdAt = uint256(bytes32(proof[40:72]));
        if (createdAt > block.timestamp) revert ProofNotYetValid(createdAt);
        if (block.timestamp > createdAt + proofExpirationDuration) {
            revert ProofExpired(createdAt, createdAt + proofExpirationDuration);
        }
        if (app != msg.sender) revert ProofAppMismatch(app, msg.sender);
        if (proofOwner != owner_) revert ProofOwnerMismatch(proofOwner, owner_);
        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                domainSeparator(),
                keccak256(abi.encode(HANDLE_PROOF_TYPEHASH, handle, proofOwner, app, createdAt))
            )
        );
        address signer = Signatures.recover(digest, proof[72:137]);
        if (signer == address(0)) revert BadProofSignature();
        registry.requireActive(signer, ROLE_GATEWAY);
        acl.grantTransient(handle, msg.sender);
        return handle;
    }

    // ------------------------------------------------------------------ ops

    /// @notice Encrypt a public value: `plaintext` is the value's ABI word (uint right-aligned,
    /// int sign-extended, bytesN left-aligned); it must be canonical for `toType`.
    function plaintextToEncrypted(bytes32 plaintext, uint8 toType) external returns (bytes32 result) {
        if (toType > T_MAX) revert InvalidType(toType);
        if (toType == 2 || toType == 3) revert UnsupportedType(OP_PLAINTEXT_TO_ENCRYPTED, toType);
        _checkPlaintext(plaintext, toType);
        bytes32[] memory ins = new bytes32[](1);
        ins[0] = plaintext;
        bytes32[] memory outs = new bytes32[](1);
        outs[0] = result = _resultHandle(OP_PLAINTEXT_TO_ENCRYPTED, ins, 0, toType);
        _finish(OP_PLAINTEXT_TO_ENCRYPTED, new bytes32[](0), ins, outs);
    }

    function add(bytes32 a, bytes32 b) external returns (bytes32) {
        return _arith(OP_ADD, a, b);
    }

    function sub(bytes32 a, bytes32 b) external returns (bytes32) {
        return _arith(OP_SUB, a, b);
    }

    function mul(bytes32 a, bytes32 b) external returns (bytes32) {
        return _arith(OP_MUL, a, b);
    }

    function div(bytes32 a, bytes32 b) external returns (bytes32) {
        return _arith(OP_DIV, a, b);
    }

    function safeAdd(bytes32 a, bytes32 b) external returns (bytes32 success, bytes32 result) {
        return _safe(OP_SAFE_ADD, a, b);
    }

    function safeSub(bytes32 a, bytes32 b) external returns (bytes32 success, bytes32 result) {
        return _safe(OP_SAFE_SUB, a, b);
    }

    function safeMul(bytes32 a, bytes32 b) external returns (bytes32 success, bytes32 result) {
        return _safe(OP_SAFE_MUL, a, b);
    }

    function safeDiv(bytes32 a, bytes32 b) external returns (bytes32 success, bytes32 result) {
        return _safe(OP_SAFE_DIV, a, b);
    }

    function eq(bytes32 a, bytes32 b) external returns (bytes32) {
        return _compare(OP_EQ, a, b);
    }

    function ne(bytes32 a, bytes32 b) external returns (bytes32) {
        return _compare(OP_NE, a, b);
    }

    function lt(bytes32 a, bytes32 b) external returns (bytes32) {
        return _compare(OP_LT, a, b);
    }

    function le(bytes32 a, bytes32 b) external returns (bytes32) {
        return _compare(OP_LE, a, b);
    }

    function gt(bytes32 a, bytes32 b) external returns (bytes32) {
        return _compare(OP_GT, a, b);
    }

    function ge(bytes32 a, bytes32 b) external returns (bytes32) {
        return _compare(OP_GE, a, b);
    }

    function select(bytes32 condition, bytes32 ifTrue, bytes32 ifFalse) external returns (bytes32 result) {
        _checkHandle(condition);
        _checkHandle(ifTrue);
        _checkHandle(ifFalse);
        if (_typeOf(condition) != T_BOOL) revert UnsupportedType(OP_SELECT, _typeOf(condition));
        uint8 t = _typeOf(ifTrue);
        if (t != _typeOf(ifFalse)) revert TypeMismatch(OP_SELECT, ifTrue, ifFalse);
        if (t == 2 || t == 3) revert UnsupportedType(OP_SELECT, t);
        bytes32[] memory ins = new bytes32[](3);
        ins[0] = condition;
        ins[1] = ifTrue;
        ins[2] = ifFalse;
        bytes32[] memory outs = new bytes32[](1);
        outs[0] = result = _resultHandle(OP_SELECT, ins, 0, t);
        _finish(OP_SELECT, ins, ins, outs);
    }

    /// @notice (amount, balanceFrom, balanceTo) -> (newBalanceFrom, newBalanceTo, transferred).
    function transfer(bytes32 amount, bytes32 balanceFrom, bytes32 balanceTo)
        external
        returns (bytes32 newBalanceFrom, bytes32 newBalanceTo, bytes32 transferred)
    {
        bytes32[] memory outs = _token(OP_TRANSFER, amount, balanceFrom, balanceTo, 3);
        return (outs[0], outs[1], outs[2]);
    }

    /// @notice (amount, balanceTo, totalSupply) -> (newBalanceTo, newTotalSupply).
    function mint(bytes32 amount, bytes32 balanceTo, bytes32 totalSupply)
        external
        returns (bytes32 newBalanceTo, bytes32 newTotalSupply)
    {
        bytes32[] memory outs = _token(OP_MINT, amount, balanceTo, totalSupply, 2);
        return (outs[0], outs[1]);
    }

    /// @notice (amount, balanceFrom, totalSupply) -> (newBalanceFrom, newTotalSupply, burnt).
    function burn(bytes32 amount, bytes32 balanceFrom, bytes32 totalSupply)
        external
        returns (bytes32 newBalanceFrom, bytes32 newTotalSupply, bytes32 burnt)
    {
        bytes32[] memory outs = _token(OP_BURN, amount, balanceFrom, totalSupply, 3);
        return (outs[0], outs[1], outs[2]);
    }

    // ------------------------------------------------------------------ internals

    function _arith(uint8 op, bytes32 a, bytes32 b) internal returns (bytes32 result) {
        uint8 t = _binaryType(op, a, b);
        if (t < 4 || t > 67) revert UnsupportedType(op, t);
        bytes32[] memory ins = _pair(a, b);
        bytes32[] memory outs = new bytes32[](1);
        outs[0] = result = _resultHandle(op, ins, 0, t);
        _finish(op, ins, ins, outs);
    }

    function _safe(uint8 op, bytes32 a, bytes32 b) internal returns (bytes32 success, bytes32 result) {
        uint8 t = _binaryType(op, a, b);
        if (t < 4 || t > 67) revert UnsupportedType(op, t);
        bytes32[] memory ins = _pair(a, b);
        bytes32[] memory outs = new bytes32[](2);
        outs[0] = success = _resultHandle(op, ins, 0, T_BOOL);
        outs[1] = result = _resultHandle(op, ins, 1, t);
        _finish(op, ins, ins, outs);
    }

    function _compare(uint8 op, bytes32 a, bytes32 b) internal returns (bytes32 result) {
        uint8 t = _binaryType(op, a, b);
        bool ok = (t >= 4 && t <= 67) || ((op == OP_EQ || op == OP_NE) && (t == T_BOOL || t == T_ADDRESS));
        if (!ok) revert UnsupportedType(op, t);
        bytes32[] memory ins = _pair(a, b);
        bytes32[] memory outs = new bytes32[](1);
        outs[0] = result = _resultHandle(op, ins, 0, T_BOOL);
        _finish(op, ins, ins, outs);
    }

    function _token(uint8 op, bytes32 x, bytes32 y, bytes32 z, uint8 outputs)
        internal
        returns (bytes32[] memory outs)
    {
        _checkHandle(x);
        _checkHandle(y);
        _checkHandle(z);
        uint8 t = _typeOf(x);
        if (t != _typeOf(y)) revert TypeMismatch(op, x, y);
        if (t != _typeOf(z)) revert TypeMismatch(op, x, z);
        if (t < 4 || t > 35) revert UnsupportedType(op, t);
        bytes32[] memory ins = new bytes32[](3);
        ins[0] = x;
        ins[1] = y;
        ins[2] = z;
        outs = new bytes32[](outputs);
        for (uint8 i = 0; i < outputs; i++) {
            outs[i] = _resultHandle(op, ins, i, t);
        }
        _finish(op, ins, ins, outs);
    }

    function _binaryType(uint8 op, bytes32 a, bytes32 b) internal view returns (uint8 t) {
        _checkHandle(a);
        _checkHandle(b);
        t = _typeOf(a);
        if (t != _typeOf(b)) revert TypeMismatch(op, a, b);
    }

    function _pair(bytes32 a, bytes32 b) internal pure returns (bytes32[] memory ins) {
        ins = new bytes32[](2);
        ins[0] = a;
        ins[1] = b;
    }

    /// @dev ACL check on `checked`, transient access on `outs`, then the event.
    function _finish(uint8 op, bytes32[] memory checked, bytes32[] memory ins, bytes32[] memory outs) internal {
        acl.computeAccess(msg.sender, checked, outs);
        emit Operation(msg.sender, op, ins, outs);
    }

    function _resultHandle(uint8 op, bytes32[] memory operands, uint8 outputIndex, uint8 typeCode)
        internal
        view
        returns (bytes32)
    {
        bytes32 h = keccak256(abi.encode(op, operands, address(this), msg.sender, block.timestamp, outputIndex));
        uint256 prefix = uint256(h) & ~uint256(0xffffffffffff);
        return bytes32(prefix | (uint256(uint32(block.chainid)) << 16) | (uint256(typeCode) << 8));
    }

    function _typeOf(bytes32 handle) internal pure returns (uint8) {
        return uint8(uint256(handle) >> 8);
    }

    function _checkHandle(bytes32 handle) internal view {
        if (uint8(uint256(handle)) != 0) revert UnsupportedHandleVersion(handle);
        if (uint32(uint256(handle) >> 16) != uint32(block.chainid)) revert WrongChain(handle);
        uint8 t = _typeOf(handle);
        if (t > T_MAX) revert InvalidType(t);
    }

    function _checkPlaintext(bytes32 plaintext, uint8 t) internal pure {
        uint256 v = uint256(plaintext);
        bool ok;
        if (t == T_BOOL) {
            ok = v <= 1;
        } else if (t == T_ADDRESS) {
            ok = v >> 160 == 0;
        } else if (t <= 35) {
            uint256 bits = (uint256(t) - 3) * 8;
            ok = bits == 256 || v >> bits == 0;
        } else if (t <= 67) {
            uint256 bits = (uint256(t) - 35) * 8;
            // canonical iff sign-extending the low `bits` bits gives back the word
            ok = bits == 256 || int256(v) == (int256(v << (256 - bits)) >> (256 - bits));
        } else {
            uint256 bytesN = uint256(t) - 67;
            ok = bytesN == 32 || v << (bytesN * 8) == 0;
        }
        if (!ok) revert PlaintextOutOfRange(plaintext, t);
    }
}
