// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title ACL: who may use and who may decrypt a handle.
/// @notice The four permissions of the seed:
///  - admin (persistent): use the handle as an operand, grant permissions; counts as viewer;
///  - transient (EIP-1153, this transaction only): same use rights as admin, not a viewer;
///  - viewer: may decrypt off-chain (the gateway checks `isViewer`);
///  - public: anyone may decrypt (`allowPublicDecryption`).
/// Grants are irreversible. Result handles start with transient access for the contract that
/// called NoxCompute; only NoxCompute (set once at deployment) can grant that.
contract ACL {
    address public immutable deployer;
    address public compute;

    mapping(bytes32 handle => mapping(address account => bool)) internal _admins;
    mapping(bytes32 handle => mapping(address account => bool)) internal _viewers;
    mapping(bytes32 handle => bool) internal _public;

    event Allowed(address indexed sender, address indexed account, bytes32 indexed handle);
    event ViewerAdded(address indexed sender, address indexed viewer, bytes32 indexed handle);
    event MarkedAsPubliclyDecryptable(address indexed sender, bytes32 indexed handle);
    event ComputeSet(address indexed compute);

    error NotAllowed(bytes32 handle, address account);
    error ZeroAddress();
    error OnlyCompute(address caller);
    error OnlyDeployer(address caller);
    error ComputeAlreadySet();

    constructor() {
        deployer = msg.sender;
    }

    /// @notice One-time wiring to NoxCompute, by the deployer.
    function setCompute(address compute_) external {
        if (msg.sender != deployer) revert OnlyDeployer(msg.sender);
        if (compute != address(0)) revert ComputeAlreadySet();
        if (compute_ == address(0)) revert ZeroAddress();
        compute = compute_;
        emit ComputeSet(compute_);
    }

    // ------------------------------------------------------------------ grants

    function allow(bytes32 handle, address account) external {
        _requireAllowed(handle, msg.sender);
        if (account == address(0)) revert ZeroAddress();
        _admins[handle][account] = true;
        emit Allowed(msg.sender, account, handle);
    }

    function allowTransient(bytes32 handle, address account) external {
        _requireAllowed(handle, msg.sender);
        if (account == address(0)) revert ZeroAddress();
        _tstoreAllowed(handle, account);
    }

    function addViewer(bytes32 handle, address viewer) external {
        _requireAllowed(handle, msg.sender);
        if (viewer == address(0)) revert ZeroAddress();
        _viewers[handle][viewer] = true;
        emit ViewerAdded(msg.sender, viewer, handle);
    }

    function allowPublicDecryption(bytes32 handle) external {
        _requireAllowed(handle, msg.sender);
        _public[handle] = true;
        emit MarkedAsPubliclyDecryptable(msg.sender, handle);
    }

    // ------------------------------------------------------------------ NoxCompute hooks

    /// @notice For NoxCompute: revert unless `caller` may use every input; then give `caller`
    /// transient access to every output.
    function computeAccess(address caller, bytes32[] calldata inputs, bytes32[] calldata outputs)
        external
    {
        if (msg.sender != compute) revert OnlyCompute(msg.sender);
        for (uint256 i = 0; i < inputs.length; i++) {
            _requireAllowed(inputs[i], caller);
        }
        for (uint256 i = 0; i < outputs.length; i++) {
            _tstoreAllowed(outputs[i], caller);
        }
    }

    /// @notice For NoxCompute: transient access after a validated input proof.
    function grantTransient(bytes32 handle, address account) external {
        if (msg.sender != compute) revert OnlyCompute(msg.sender);
        _tstoreAllowed(handle, account);
    }

    // ------------------------------------------------------------------ views

    /// @notice Transient or persistent admin.
    function isAllowed(bytes32 handle, address account) public view returns (bool) {
        return _admins[handle][account] || _tloadAllowed(handle, account);
    }

    /// @notice Persistent admin only (transient access does not survive the transaction).
    function isAllowedPersistent(bytes32 handle, address account) external view returns (bool) {
        return _admins[handle][account];
    }

    /// @notice Publicly decryptable, viewer, or persistent admin (transient does not count).
    function isViewer(bytes32 handle, address viewer) external view returns (bool) {
        return _public[handle] || _viewers[handle][viewer] || _admins[handle][viewer];
    }

    function isPubliclyDecryptable(bytes32 handle) external view returns (bool) {
        return _public[handle];
    }

    // ------------------------------------------------------------------ internals

    function _requireAllowed(bytes32 handle, address account) internal view {
        if (!isAllowed(handle, account)) revert NotAllowed(handle, account);
    }

    function _slot(bytes32 handle, address account) internal pure returns (bytes32 slot) {
        assembly ("memory-safe") {
            mstore(0x00, handle)
            mstore(0x20, account)
            slot := keccak256(0x00, 0x40)
        }
    }

    function _tstoreAllowed(bytes32 handle, address account) internal {
        bytes32 slot = _slot(handle, account);
        assembly ("memory-safe") {
            tstore(slot, 1)
        }
    }

    function _tloadAllowed(bytes32 handle, address account) internal view returns (bool allowed) {
        bytes32 slot = _slot(handle, account);
        assembly ("memory-safe") {
            allowed := tload(slot)
        }
    }
}
