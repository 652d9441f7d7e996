// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ACL} from "./ACL.sol";
import {NoxCompute} from "./NoxCompute.sol";

/// @title ConfidentialToken: a sample token whose balances are euint256 handles.
/// @notice Amounts enter as gateway-proven inputs; NoxCompute's token ops cap silently (a
/// transfer larger than the balance moves what it can), so nothing about balances leaks through
/// reverts. Each holder is a persistent admin (hence a viewer) of its balance handle.
contract ConfidentialToken {
    uint8 internal constant EUINT256 = 35;

    NoxCompute public immutable compute;
    ACL public immutable acl;
    address public immutable owner;
    string public name;

    bytes32 public totalSupply;
    mapping(address account => bytes32) internal _balances;

    event ConfidentialTransfer(address indexed from, address indexed to, bytes32 transferred);
    event ConfidentialMint(address indexed to, bytes32 newTotalSupply);
    event ConfidentialBurn(address indexed from, bytes32 burnt);

    error NotOwner(address caller);

    constructor(NoxCompute compute_, string memory name_) {
        compute = compute_;
        acl = compute_.acl();
        owner = msg.sender;
        name = name_;
        bytes32 zero = compute_.plaintextToEncrypted(bytes32(0), EUINT256);
        _keep(zero, msg.sender);
        totalSupply = zero;
    }

    function balanceOf(address account) external view returns (bytes32) {
        return _balances[account];
    }

    /// @notice Owner mints an amount it encrypted through the gateway.
    function mint(address to, bytes32 encryptedAmount, bytes calldata proof) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        bytes32 amount = compute.validateInputProof(encryptedAmount, msg.sender, proof, EUINT256);
        (bytes32 newTo, bytes32 newSupply) = compute.mint(amount, _balance(to), totalSupply);
        _balances[to] = _keep(newTo, to);
        totalSupply = _keep(newSupply, owner);
        emit ConfidentialMint(to, newSupply);
    }

    function transfer(address to, bytes32 encryptedAmount, bytes calldata proof) external {
        bytes32 amount = compute.validateInputProof(encryptedAmount, msg.sender, proof, EUINT256);
        (bytes32 newFrom, bytes32 newTo, bytes32 moved) =
            compute.transfer(amount, _balance(msg.sender), _balance(to));
        _balances[msg.sender] = _keep(newFrom, msg.sender);
        _balances[to] = _keep(newTo, to);
        _keep(moved, msg.sender);
        acl.allow(moved, to);
        emit ConfidentialTransfer(msg.sender, to, moved);
    }

    function burn(bytes32 encryptedAmount, bytes calldata proof) external {
        bytes32 amount = compute.validateInputProof(encryptedAmount, msg.sender, proof, EUINT256);
        (bytes32 newFrom, bytes32 newSupply, bytes32 burnt) =
            compute.burn(amount, _balance(msg.sender), totalSupply);
        _balances[msg.sender] = _keep(newFrom, msg.sender);
        totalSupply = _keep(newSupply, owner);
        _keep(burnt, msg.sender);
        emit ConfidentialBurn(msg.sender, burnt);
    }

    function _balance(address account) internal returns (bytes32 handle) {
        handle = _balances[account];
        if (handle == bytes32(0)) {
            handle = compute.plaintextToEncrypted(bytes32(0), EUINT256);
        }
    }

    /// @dev Persist access for this contract and make `holder` an admin (and so a viewer).
    function _keep(bytes32 handle, address holder) internal returns (bytes32) {
        acl.allow(handle, address(this));
        acl.allow(handle, holder);
        return handle;
    }
}
