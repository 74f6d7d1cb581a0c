// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";

/// @title IdentityRegistry
/// @notice Registers myst identities and publishes their public keys. Registration is relayable: the
///         identity signs, any funded account submits.
/// @dev Gas: a registration writes two storage slots (the key); the beneficiary slot is written only
///      when it differs from the identity, which is the common case's saving.
contract IdentityRegistry is IIdentityRegistry, EIP712 {
    bytes32 private constant REGISTRATION_TYPEHASH = keccak256("Registration(address identity,address beneficiary)");
    bytes32 private constant BENEFICIARY_CHANGE_TYPEHASH =
        keccak256("BeneficiaryChange(address identity,address beneficiary,uint256 nonce)");

    struct PublicKey {
        bytes32 x;
        bytes32 y;
    }

    /// @dev Beneficiary and nonce share one slot. A zero beneficiary means "the identity itself".
    struct Payee {
        address beneficiary;
        uint96 nonce;
    }

    mapping(address identity => PublicKey) private _keys;
    mapping(address identity => Payee) private _payees;

    constructor() EIP712("MystIdentityRegistry", "1") {}

    /// @inheritdoc IIdentityRegistry
    function register(bytes calldata publicKey, address beneficiary, bytes calldata signature)
        external
        returns (address identity)
    {
        if (publicKey.length != 64) revert IdentityPublicKeyLength(publicKey.length);
        identity = address(uint160(uint256(keccak256(publicKey))));
        PublicKey storage key = _keys[identity];
        if (key.y != 0) revert IdentityAlreadyRegistered(identity);

        bytes32 structHash = keccak256(abi.encode(REGISTRATION_TYPEHASH, identity, beneficiary));
        _checkSignature(identity, structHash, signature);

        key.x = bytes32(publicKey[0:32]);
        key.y = bytes32(publicKey[32:64]);
        if (beneficiary == identity) beneficiary = address(0);
        if (beneficiary != address(0)) _payees[identity].beneficiary = beneficiary;
        emit IdentityRegistered(identity, beneficiary == address(0) ? identity : beneficiary, publicKey);
    }

    /// @inheritdoc IIdentityRegistry
    function setBeneficiary(address identity, address beneficiary, uint256 nonce, bytes calldata signature)
        external
    {
        _requireRegistered(identity);
        Payee storage payee = _payees[identity];
        uint256 expected = payee.nonce;
        if (nonce != expected) revert IdentityNonceInvalid(identity, expected, nonce);

        bytes32 structHash = keccak256(abi.encode(BENEFICIARY_CHANGE_TYPEHASH, identity, beneficiary, nonce));
        _checkSignature(identity, structHash, signature);

        payee.beneficiary = beneficiary == identity ? address(0) : beneficiary;
        payee.nonce = uint96(expected + 1);
        emit BeneficiaryChanged(identity, beneficiary == address(0) ? identity : beneficiary, nonce);
    }

    /// @inheritdoc IIdentityRegistry
    /// @dev The y coordinate of a point on secp256k1 made from a real key is never zero in practice
    ///      (y = 0 would need x³ = −7), so a non-zero y marks a registered identity.
    function isRegistered(address identity) public view returns (bool) {
        return _keys[identity].y != 0;
    }

    /// @inheritdoc IIdentityRegistry
    function publicKeyOf(address identity) external view returns (bytes memory) {
        _requireRegistered(identity);
        PublicKey storage key = _keys[identity];
        return abi.encodePacked(key.x, key.y);
    }

    /// @inheritdoc IIdentityRegistry
    function beneficiaryOf(address identity) external view returns (address) {
        address beneficiary = _payees[identity].beneficiary;
        return beneficiary == address(0) ? identity : beneficiary;
    }

    /// @inheritdoc IIdentityRegistry
    function nonceOf(address identity) external view returns (uint256) {
        return _payees[identity].nonce;
    }

    /// @notice The EIP-712 domain separator signatures for this registry are made under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _requireRegistered(address identity) private view {
        if (!isRegistered(identity)) revert IdentityNotRegistered(identity);
    }

    function _checkSignature(address identity, bytes32 structHash, bytes calldata signature) private view {
        (address recovered, ECDSA.RecoverError err,) =
            ECDSA.tryRecoverCalldata(_hashTypedDataV4(structHash), signature);
        if (err != ECDSA.RecoverError.NoError || recovered != identity) {
            revert IdentitySignatureInvalid(identity, recovered);
        }
    }
}
