// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Signatures} from "./Signatures.sol";

/// @title NoxRegistry: which attested enclaves may act in which role.
/// @notice Records, per enclave address: role, operator, workload id, quote hash, registration
/// time, expiry, endpoint and revocation. `register` checks on-chain what is cheap (the quote
/// header is TDX, REPORTDATA binds the enclave address and extData, the workload id computed
/// from the quote body is allowlisted for the role) and emits the raw quote so every relying
/// party can verify its DCAP signature chain off-chain. The DCAP chain is NOT verified here.
/// @dev Roles: 1 orchestrator, 2 runner, 3 gateway, 4 KMS, 5 ingestor.
/// Binding (flashtestations scheme): REPORTDATA[0:20] = enclave address, REPORTDATA[20:52] =
/// keccak256(abi.encode(uint8 role, address operator, uint256 chainId, address registry,
/// string endpoint)), REPORTDATA[52:64] = 0. The enclave proves it holds its key either by sending the transaction
/// itself (`register`) or by signing an EIP-712 `RegisterPermit` that anyone (the operator)
/// submits with `registerWithPermit`. Either way a third party cannot replay an old quote to
/// extend a dead enclave's registration: a refresh needs the live enclave key.
contract NoxRegistry {
    uint8 public constant ROLE_ORCHESTRATOR = 1;
    uint8 public constant ROLE_RUNNER = 2;
    uint8 public constant ROLE_GATEWAY = 3;
    uint8 public constant ROLE_KMS = 4;
    uint8 public constant ROLE_INGESTOR = 5;
    uint8 internal constant MAX_ROLE = 5;

    uint64 public constant DEFAULT_MAX_ATTESTATION_AGE = 24 hours;
    uint64 public constant MAX_MAX_ATTESTATION_AGE = 30 days;

    uint32 internal constant TEE_TYPE_TDX = 0x81;
    uint256 internal constant HEADER_LEN = 48;
    uint256 internal constant TD10_BODY_LEN = 584;
    uint256 internal constant TD15_BODY_LEN = 648;
    uint256 internal constant TD15EX_BODY_LEN = 885;

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant REGISTER_PERMIT_TYPEHASH =
        keccak256("RegisterPermit(bytes32 quoteHash,uint256 nonce,uint256 deadline)");

    struct Node {
        uint8 role;
        bool revoked;
        address operator;
        uint64 registeredAt;
        uint64 expiresAt;
        bytes32 workloadId;
        bytes32 quoteHash;
        string endpoint;
    }

    address public owner;
    address public pendingOwner;
    uint64 public maxAttestationAge;

    mapping(uint8 role => mapping(bytes32 workloadId => bool)) public workloadAllowed;
    mapping(address enclave => Node) internal _nodes;
    mapping(uint8 role => address[]) internal _members;
    mapping(address enclave => uint256) public permitNonces;

    bytes internal _kmsPublicKey;
    bytes[] internal _kmsPublicShares;
    uint8 public kmsThreshold;

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event WorkloadAllowed(uint8 indexed role, bytes32 indexed workloadId);
    event WorkloadDisallowed(uint8 indexed role, bytes32 indexed workloadId);
    event MaxAttestationAgeChanged(uint64 maxAttestationAge);
    event NodeRegistered(
        address indexed enclave,
        uint8 indexed role,
        address indexed operator,
        bytes32 workloadId,
        uint64 expiresAt,
        string endpoint,
        bytes quote
    );
    event NodeRevoked(address indexed enclave);
    event KmsKeysChanged(bytes publicKey, bytes[] publicShares, uint8 threshold);

    error NotOwner(address caller);
    error NotPendingOwner(address caller);
    error ZeroAddress();
    error InvalidRole(uint8 role);
    error InvalidMaxAttestationAge(uint64 value);
    error QuoteTooShort(uint256 length);
    error UnsupportedQuoteVersion(uint16 version);
    error NotTdxQuote(uint32 teeType);
    error UnsupportedTdBody(uint16 bodyType, uint32 bodySize);
    error ReportDataAddressMismatch(address expected, address actual);
    error ExtDataMismatch(bytes32 expected, bytes32 actual);
    error ReportDataPaddingNotZero();
    error WorkloadNotAllowed(uint8 role, bytes32 workloadId);
    error RoleMismatch(address enclave, uint8 registeredRole, uint8 requestedRole);
    error EnclaveRevoked(address enclave);
    error PermitExpired(uint256 deadline);
    error BadPermitSigner(address expected, address actual);
    error NodeNotRegistered(address enclave);
    error NodeExpired(address enclave, uint64 expiresAt);
    error WrongRole(address enclave, uint8 role, uint8 expectedRole);
    error WorkloadRevoked(address enclave, bytes32 workloadId);
    error InvalidKmsKeys();
    error InvalidPageLimit();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert ZeroAddress();
        owner = initialOwner;
        maxAttestationAge = DEFAULT_MAX_ATTESTATION_AGE;
        emit OwnershipTransferred(address(0), initialOwner);
        emit MaxAttestationAgeChanged(DEFAULT_MAX_ATTESTATION_AGE);
    }

    // ------------------------------------------------------------------ governance

    /// @notice Step 1 of 2: name the next owner; it must call `acceptOwnership`.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    /// @notice Step 2 of 2.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner || msg.sender == address(0)) revert NotPendingOwner(msg.sender);
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    function allowWorkload(uint8 role, bytes32 workloadId) external onlyOwner {
        _checkRole(role);
        workloadAllowed[role][workloadId] = true;
        emit WorkloadAllowed(role, workloadId);
    }

    /// @notice Effective immediately: every node of that workload stops counting as active.
    function disallowWorkload(uint8 role, bytes32 workloadId) external onlyOwner {
        _checkRole(role);
        workloadAllowed[role][workloadId] = false;
        emit WorkloadDisallowed(role, workloadId);
    }

    /// @notice Effective immediately and permanent for that enclave address.
    function revokeEnclave(address enclave) external onlyOwner {
        Node storage n = _nodes[enclave];
        if (n.role == 0) revert NodeNotRegistered(enclave);
        n.revoked = true;
        emit NodeRevoked(enclave);
    }

    function setMaxAttestationAge(uint64 value) external onlyOwner {
        if (value == 0 || value > MAX_MAX_ATTESTATION_AGE) revert InvalidMaxAttestationAge(value);
        maxAttestationAge = value;
        emit MaxAttestationAgeChanged(value);
    }

    /// @notice Publish the threshold KMS key: PK (33-byte compressed secp256k1), the public
    /// shares PK_i in node-index order (i = position + 1) and the threshold t.
    function setKmsKeys(bytes calldata publicKey, bytes[] calldata publicShares, uint8 threshold)
        external
        onlyOwner
    {
        if (publicKey.length != 33 || threshold == 0 || threshold > publicShares.length) {
            revert InvalidKmsKeys();
        }
        delete _kmsPublicShares;
        for (uint256 i = 0; i < publicShares.length; i++) {
            if (publicShares[i].length != 33) revert InvalidKmsKeys();
            _kmsPublicShares.push(publicShares[i]);
        }
        _kmsPublicKey = publicKey;
        kmsThreshold = threshold;
        emit KmsKeysChanged(publicKey, publicShares, threshold);
    }

    // ------------------------------------------------------------------ registration

    /// @notice Register (or refresh) the calling enclave with a fresh TDX quote.
    function register(bytes calldata quote, uint8 role, address operator, string calldata endpoint)
        external
    {
        _register(msg.sender, quote, role, operator, endpoint);
    }

    /// @notice Register (or refresh) the enclave named in REPORTDATA[0:20], paid for by anyone
    /// (normally the operator), with the enclave's EIP-712 signature over
    /// RegisterPermit(keccak256(quote), permitNonces[enclave], deadline).
    function registerWithPermit(
        bytes calldata quote,
        uint8 role,
        address operator,
        string calldata endpoint,
        uint256 deadline,
        bytes calldata signature
    ) external {
        if (block.timestamp > deadline) revert PermitExpired(deadline);
        address enclave = _reportDataAddress(quote);
        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                domainSeparator(),
                keccak256(abi.encode(REGISTER_PERMIT_TYPEHASH, keccak256(quote), permitNonces[enclave], deadline))
            )
        );
        address signer = Signatures.recover(digest, signature);
        if (signer != enclave) revert BadPermitSigner(enclave, signer);
        permitNonces[enclave]++;
        _register(enclave, quote, role, operator, endpoint);
    }

    function _register(
        address enclave,
        bytes calldata quote,
        uint8 role,
        address operator,
        string calldata endpoint
    ) internal {
        _checkRole(role);
        if (operator == address(0)) revert ZeroAddress();
        Node storage n = _nodes[enclave];
        if (n.revoked) revert EnclaveRevoked(enclave);
        if (n.role != 0 && n.role != role) revert RoleMismatch(enclave, n.role, role);

        bytes32 workloadId = _checkQuote(enclave, quote, role, operator, endpoint);
        if (n.role == 0) {
            _members[role].push(enclave);
            n.role = role;
        }
        uint64 expiresAt = uint64(block.timestamp) + maxAttestationAge;
        n.operator = operator;
        n.registeredAt = uint64(block.timestamp);
        n.expiresAt = expiresAt;
        n.workloadId = workloadId;
        n.quoteHash = keccak256(quote);
        n.endpoint = endpoint;
        emit NodeRegistered(enclave, role, operator, workloadId, expiresAt, endpoint, quote);
    }

    /// @dev The on-chain checks of a quote: header, REPORTDATA binding, workload allowlist.
    function _checkQuote(
        address enclave,
        bytes calldata quote,
        uint8 role,
        address operator,
        string calldata endpoint
    ) internal view returns (bytes32 workloadId) {
        uint256 body;
        (body, workloadId) = _parseQuote(quote);
        address bound;
        bytes32 boundExt;
        uint256 padding;
        assembly ("memory-safe") {
            let rd := add(add(quote.offset, body), 520)
            bound := shr(96, calldataload(rd))
            boundExt := calldataload(add(rd, 20))
            padding := and(calldataload(add(rd, 32)), 0xffffffffffffffffffffffff)
        }
        if (bound != enclave) revert ReportDataAddressMismatch(enclave, bound);
        if (padding != 0) revert ReportDataPaddingNotZero();
        bytes32 ext = keccak256(abi.encode(role, operator, block.chainid, address(this), endpoint));
        if (boundExt != ext) revert ExtDataMismatch(ext, boundExt);
        if (!workloadAllowed[role][workloadId]) revert WorkloadNotAllowed(role, workloadId);
    }

    /// @dev Checks the header (v4/v5, TDX) and body size; returns the body offset and the
    /// workload id keccak256(MRTD ‖ RTMR0..3 ‖ MRCONFIGID ‖ XFAM ‖ TDATTRIBUTES) over the raw
    /// quote bytes (XFAM and TDATTRIBUTES as the 8 little-endian bytes of the quote).
    function _parseQuote(bytes calldata quote) internal pure returns (uint256 body, bytes32 workloadId) {
        uint256 len = quote.length;
        if (len < HEADER_LEN + 6) revert QuoteTooShort(len);
        uint16 version = uint16(uint8(quote[0])) | (uint16(uint8(quote[1])) << 8);
        if (version != 4 && version != 5) revert UnsupportedQuoteVersion(version);
        uint32 teeType = uint32(uint8(quote[4])) | (uint32(uint8(quote[5])) << 8)
            | (uint32(uint8(quote[6])) << 16) | (uint32(uint8(quote[7])) << 24);
        if (teeType != TEE_TYPE_TDX) revert NotTdxQuote(teeType);
        uint256 bodyLen;
        if (version == 4) {
            body = HEADER_LEN;
            bodyLen = TD10_BODY_LEN;
        } else {
            uint16 bodyType = uint16(uint8(quote[48])) | (uint16(uint8(quote[49])) << 8);
            uint32 size = uint32(uint8(quote[50])) | (uint32(uint8(quote[51])) << 8)
                | (uint32(uint8(quote[52])) << 16) | (uint32(uint8(quote[53])) << 24);
            bool known = (bodyType == 2 && size == TD10_BODY_LEN) || (bodyType == 3 && size == TD15_BODY_LEN)
                || (bodyType == 4 && size == TD15EX_BODY_LEN);
            if (!known) {
                revert UnsupportedTdBody(bodyType, size);
            }
            body = HEADER_LEN + 6;
            bodyLen = size;
        }
        if (len < body + bodyLen) revert QuoteTooShort(len);
        assembly ("memory-safe") {
            let b := add(quote.offset, body)
            let m := mload(0x40)
            calldatacopy(m, add(b, 136), 48) // MRTD
            calldatacopy(add(m, 48), add(b, 328), 192) // RTMR0..RTMR3 (contiguous)
            calldatacopy(add(m, 240), add(b, 184), 48) // MRCONFIGID
            calldatacopy(add(m, 288), add(b, 128), 8) // XFAM
            calldatacopy(add(m, 296), add(b, 120), 8) // TDATTRIBUTES
            workloadId := keccak256(m, 304)
        }
    }

    function _reportDataAddress(bytes calldata quote) internal pure returns (address enclave) {
        (uint256 body,) = _parseQuote(quote);
        assembly ("memory-safe") {
            enclave := shr(96, calldataload(add(add(quote.offset, body), 520)))
        }
    }

    function _checkRole(uint8 role) internal pure {
        if (role == 0 || role > MAX_ROLE) revert InvalidRole(role);
    }

    // ------------------------------------------------------------------ views

    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("Nox"), keccak256("1"), block.chainid, address(this))
        );
    }

    /// @notice The workload id of a quote, as `register` computes it (reverts on a non-TDX quote).
    function workloadIdOf(bytes calldata quote) external pure returns (bytes32 workloadId) {
        (, workloadId) = _parseQuote(quote);
    }

    function getNode(address enclave) external view returns (Node memory) {
        return _nodes[enclave];
    }

    /// @notice True iff registered, not revoked, not expired and its workload still allowed.
    function isActive(address enclave) public view returns (bool) {
        Node storage n = _nodes[enclave];
        return n.role != 0 && !n.revoked && block.timestamp < n.expiresAt
            && workloadAllowed[n.role][n.workloadId];
    }

    function isActiveRole(address enclave, uint8 role) external view returns (bool) {
        return _nodes[enclave].role == role && isActive(enclave);
    }

    /// @notice Reverts with the precise reason unless `enclave` is an active node of `role`.
    function requireActive(address enclave, uint8 role) external view {
        Node storage n = _nodes[enclave];
        if (n.role == 0) revert NodeNotRegistered(enclave);
        if (n.role != role) revert WrongRole(enclave, n.role, role);
        if (n.revoked) revert EnclaveRevoked(enclave);
        if (block.timestamp >= n.expiresAt) revert NodeExpired(enclave, n.expiresAt);
        if (!workloadAllowed[role][n.workloadId]) revert WorkloadRevoked(enclave, n.workloadId);
    }

    function memberCount(uint8 role) external view returns (uint256) {
        return _members[role].length;
    }

    /// @notice Active nodes of `role`, scanning members [cursor, cursor + limit). Continue with
    /// `next` while `next < memberCount(role)`.
    function activeNodes(uint8 role, uint256 cursor, uint256 limit)
        external
        view
        returns (address[] memory page, uint256 next)
    {
        if (limit == 0) revert InvalidPageLimit();
        address[] storage members = _members[role];
        uint256 total = members.length;
        if (cursor >= total) return (new address[](0), total);
        uint256 end = limit > total - cursor ? total : cursor + limit;
        address[] memory found = new address[](end - cursor);
        uint256 count = 0;
        for (uint256 i = cursor; i < end; i++) {
            if (isActive(members[i])) found[count++] = members[i];
        }
        assembly ("memory-safe") {
            mstore(found, count)
        }
        return (found, end);
    }

    function kmsPublicKey() external view returns (bytes memory) {
        return _kmsPublicKey;
    }

    function kmsPublicShares() external view returns (bytes[] memory) {
        return _kmsPublicShares;
    }
}
