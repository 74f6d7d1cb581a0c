// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IIdentityRegistry
/// @notice Identities of myst nodes: an identity is the Ethereum address of a secp256k1 key, and
///         registering it publishes the 64-byte public key so any node can encrypt to it.
interface IIdentityRegistry {
    /// @notice The public key is not 64 bytes (uncompressed x‖y, without the 0x04 prefix).
    error IdentityPublicKeyLength(uint256 length);
    /// @notice The identity derived from the public key is already registered.
    error IdentityAlreadyRegistered(address identity);
    /// @notice The identity is not registered.
    error IdentityNotRegistered(address identity);
    /// @notice The signature does not recover to the identity (`recovered` is zero for a malformed one).
    error IdentitySignatureInvalid(address identity, address recovered);
    /// @notice A beneficiary change carried a nonce other than the identity's current one.
    error IdentityNonceInvalid(address identity, uint256 expected, uint256 given);

    /// @notice `identity` was registered with `publicKey`; earnings go to `beneficiary`.
    event IdentityRegistered(address indexed identity, address beneficiary, bytes publicKey);
    /// @notice Earnings of `identity` now go to `beneficiary`; `nonce` was consumed.
    event BeneficiaryChanged(address indexed identity, address beneficiary, uint256 nonce);

    /// @notice Registers the identity of `publicKey`. Anyone may submit it (relay): the identity
    ///         authorizes it with an EIP-712 `Registration(address identity,address beneficiary)`
    ///         signature.
    /// @param publicKey the 64-byte uncompressed public key (x‖y); the identity is the last 20
    ///        bytes of its keccak256
    /// @param beneficiary where the identity's earnings are paid; zero means the identity itself
    /// @param signature 65-byte (r,s,v) signature by the identity, low-s
    /// @return identity the registered identity
    function register(bytes calldata publicKey, address beneficiary, bytes calldata signature)
        external
        returns (address identity);

    /// @notice Changes where the earnings of `identity` are paid. Anyone may submit it; the identity
    ///         authorizes it with an EIP-712
    ///         `BeneficiaryChange(address identity,address beneficiary,uint256 nonce)` signature.
    /// @dev `nonce` must equal `nonceOf(identity)`; it is incremented, so a change cannot be replayed.
    function setBeneficiary(address identity, address beneficiary, uint256 nonce, bytes calldata signature)
        external;

    /// @notice Whether `identity` is registered.
    function isRegistered(address identity) external view returns (bool);

    /// @notice The 64-byte public key of a registered identity.
    /// @dev Reverts with `IdentityNotRegistered` for an unknown identity.
    function publicKeyOf(address identity) external view returns (bytes memory);

    /// @notice Where the earnings of `identity` are paid: the identity itself unless it set another.
    /// @dev Does not check registration (an unknown identity is its own beneficiary): settlement
    ///      calls it for a provider that was checked at deposit, and saves a storage read.
    function beneficiaryOf(address identity) external view returns (address);

    /// @notice The nonce the next beneficiary change of `identity` must carry.
    function nonceOf(address identity) external view returns (uint256);
}
