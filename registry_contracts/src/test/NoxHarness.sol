// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ACL} from "../ACL.sol";
import {NoxCompute} from "../NoxCompute.sol";

/// @title NoxHarness: a test app contract for NoxCompute and the ACL (tests and gas table only).
/// @notice Keeps persistent access to the handles it makes, so later transactions can use them;
/// `run` dispatches any op by operator code and emits the gas the NoxCompute call spent.
contract NoxHarness {
    NoxCompute public immutable compute;
    ACL public immutable acl;

    event Made(bytes32 handle);
    event Measured(uint8 indexed operator, uint256 gasUsed, bytes32[] outputs);
    event AclMeasured(string call, uint256 gasUsed);
    event Validated(bytes32 handle, bool allowedInTx);

    error UnknownOperator(uint8 operator);

    constructor(NoxCompute compute_) {
        compute = compute_;
        acl = compute_.acl();
    }

    /// @notice PlaintextToEncrypted, then persistent access for this contract.
    function encrypt(bytes32 plaintext, uint8 typeCode) external returns (bytes32 handle) {
        handle = compute.plaintextToEncrypted(plaintext, typeCode);
        acl.allow(handle, address(this));
        emit Made(handle);
    }

    /// @notice Run operator `op` on `ins`; keep access to the outputs; emit the gas used.
    function run(uint8 op, bytes32[] calldata ins) external returns (bytes32[] memory outs) {
        uint256 before = gasleft();
        outs = _dispatch(op, ins);
        uint256 used = before - gasleft();
        for (uint256 i = 0; i < outs.length; i++) {
            acl.allow(outs[i], address(this));
        }
        emit Measured(op, used, outs);
    }

    /// @notice Make the caller an admin of `handle` (persistent), as an app would.
    function share(bytes32 handle, address account) external {
        acl.allow(handle, account);
    }

    /// @notice Validate an input proof with the caller as owner; report the transient access.
    function validate(bytes32 handle, bytes calldata proof, uint8 typeCode) external {
        bytes32 h = compute.validateInputProof(handle, msg.sender, proof, typeCode);
        emit Validated(h, acl.isAllowed(h, address(this)));
    }

    /// @notice Gas of each ACL call on a handle this contract administers.
    function measureAcl(bytes32 handle, address account) external {
        uint256 g = gasleft();
        acl.allowTransient(handle, account);
        emit AclMeasured("allowTransient", g - gasleft());
        g = gasleft();
        acl.allow(handle, account);
        emit AclMeasured("allow", g - gasleft());
        g = gasleft();
        acl.addViewer(handle, account);
        emit AclMeasured("addViewer", g - gasleft());
        g = gasleft();
        acl.isAllowed(handle, account);
        emit AclMeasured("isAllowed", g - gasleft());
        g = gasleft();
        acl.isViewer(handle, account);
        emit AclMeasured("isViewer", g - gasleft());
        g = gasleft();
        acl.allowPublicDecryption(handle);
        emit AclMeasured("allowPublicDecryption", g - gasleft());
        g = gasleft();
        acl.isPubliclyDecryptable(handle);
        emit AclMeasured("isPubliclyDecryptable", g - gasleft());
    }

    /// @notice Transient grant then use in the same transaction (EIP-1153 check).
    function transientThenUse(bytes32 handle, address account) external returns (bool inTx) {
        acl.allowTransient(handle, account);
        inTx = acl.isAllowed(handle, account);
    }

    function _dispatch(uint8 op, bytes32[] calldata i) internal returns (bytes32[] memory o) {
        if (op == 1) return _one(compute.add(i[0], i[1]));
        if (op == 2) return _one(compute.sub(i[0], i[1]));
        if (op == 3) return _one(compute.mul(i[0], i[1]));
        if (op == 4) return _one(compute.div(i[0], i[1]));
        if (op >= 5 && op <= 8) {
            (bytes32 s, bytes32 r) = op == 5
                ? compute.safeAdd(i[0], i[1])
                : op == 6 ? compute.safeSub(i[0], i[1]) : op == 7 ? compute.safeMul(i[0], i[1]) : compute.safeDiv(i[0], i[1]);
            o = new bytes32[](2);
            o[0] = s;
            o[1] = r;
            return o;
        }
        if (op == 9) return _one(compute.select(i[0], i[1], i[2]));
        if (op == 10) return _one(compute.eq(i[0], i[1]));
        if (op == 11) return _one(compute.ne(i[0], i[1]));
        if (op == 12) return _one(compute.lt(i[0], i[1]));
        if (op == 13) return _one(compute.le(i[0], i[1]));
        if (op == 14) return _one(compute.gt(i[0], i[1]));
        if (op == 15) return _one(compute.ge(i[0], i[1]));
        if (op == 16 || op == 18) {
            o = new bytes32[](3);
            if (op == 16) (o[0], o[1], o[2]) = compute.transfer(i[0], i[1], i[2]);
            else (o[0], o[1], o[2]) = compute.burn(i[0], i[1], i[2]);
            return o;
        }
        if (op == 17) {
            o = new bytes32[](2);
            (o[0], o[1]) = compute.mint(i[0], i[1], i[2]);
            return o;
        }
        revert UnknownOperator(op);
    }

    function _one(bytes32 h) internal pure returns (bytes32[] memory o) {
        o = new bytes32[](1);
        o[0] = h;
    }
}
