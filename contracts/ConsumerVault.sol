// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {IERC1363Receiver} from "@openzeppelin/contracts/interfaces/IERC1363Receiver.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IIdentityRegistry} from "./interfaces/IIdentityRegistry.sol";
import {IConsumerVault} from "./interfaces/IConsumerVault.sol";

/// @title ConsumerVault
/// @notice One deposit per consumer pays any provider: cumulative promises per (consumer, provider),
///         settled singly, in batches, or relayed by anyone for a fee the provider capped.
/// @dev A vault is one slot (balance, escrow, exit time); a pair's settled figure is one slot; a
///      provider's credited earnings and relay nonce are one slot. Earnings are credited (pull) and
///      paid out by `withdrawEarnings` or at the end of a relayed settlement, so a settlement moves no
///      token. uint96 holds 7.9e28 wei, far above any MYST supply. Promises arrive packed, 96 bytes
///      each (`consumer ‖ uint96 amount ‖ r ‖ yParity‖s`, see `IConsumerVault`): each is read with
///      three calldata loads, hashed under a domain separator computed once per call, recovered with
///      one `ecrecover`, and touches two slots (its vault, its pair) once each; docs/gas.md has the floor.
contract ConsumerVault is IConsumerVault, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 private constant PROMISE_TYPEHASH = keccak256("Promise(address consumer,address provider,uint256 amount)");
    bytes32 private constant CLAIM_TYPEHASH = keccak256("Claim(address consumer,uint256 amount)");
    bytes32 private constant RELAYED_TYPEHASH = keccak256(
        "RelayedSettlement(address provider,address relayer,Claim[] claims,uint256 maxFee,uint256 nonce)Claim(address consumer,uint256 amount)"
    );

    /// @dev The size of one packed promise in calldata: consumer (20) ‖ amount (12) ‖ r (32) ‖ yParity‖s (32).
    uint256 private constant PROMISE_BYTES = 96;
    /// @dev secp256k1n / 2: a larger s is the malleable twin of a valid signature (EIP-2).
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    struct Vault {
        uint96 balance;
        uint96 escrow;
        uint64 exitReadyAt;
    }

    struct Earner {
        uint128 earnings;
        uint128 relayNonce;
    }

    IERC20 private immutable _token;
    IIdentityRegistry private immutable _registry;
    uint64 private immutable _challengePeriod;

    mapping(address consumer => Vault) private _vaults;
    mapping(address provider => mapping(address consumer => uint256)) private _settled;
    mapping(address provider => Earner) private _earners;

    /// @param token_ the MYST token
    /// @param registry_ the identity registry (providers' beneficiaries)
    /// @param challengePeriod_ seconds between an exit request and the withdrawal
    constructor(IERC20 token_, IIdentityRegistry registry_, uint64 challengePeriod_) EIP712("MystConsumerVault", "1") {
        _token = token_;
        _registry = registry_;
        _challengePeriod = challengePeriod_;
    }

    /// @inheritdoc IConsumerVault
    function deposit(address consumer, uint256 amount, uint256 escrow) external nonReentrant {
        _deposit(consumer, amount, escrow);
    }

    /// @inheritdoc IConsumerVault
    function depositWithPermit(address consumer, uint256 amount, uint256 escrow, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
    {
        // A front-runner may have used the permit already; the allowance it set still serves.
        try IERC20Permit(address(_token)).permit(msg.sender, address(this), amount + escrow, deadline, v, r, s) {} catch {}
        _deposit(consumer, amount, escrow);
    }

    /// @notice A deposit by `token.transferAndCall(vault, value, data)` (see `IConsumerVault`).
    /// @dev The token calls this after moving `value` to the vault: no allowance, no permit, one
    ///      transfer. Only the token may call it, and it makes no call out.
    function onTransferReceived(address, address from, uint256 value, bytes calldata data) external returns (bytes4) {
        if (msg.sender != address(_token)) revert DepositNotFromToken(msg.sender);
        if (data.length == 0) {
            _credit(from, value, 0);
        } else {
            if (data.length != 64) revert DepositDataMalformed(data.length);
            (address consumer, uint256 escrow) = abi.decode(data, (address, uint256));
            if (escrow > value) revert DepositEscrowAboveValue(consumer, escrow, value);
            _credit(consumer, value - escrow, escrow);
        }
        return IERC1363Receiver.onTransferReceived.selector;
    }

    /// @inheritdoc IConsumerVault
    function settle(address provider, bytes calldata promise_) external nonReentrant returns (uint256 paid) {
        if (promise_.length != PROMISE_BYTES) revert PromisesMalformed(promise_.length);
        paid = _settle(provider, _pairsOf(provider), _offsetOf(promise_), _domainSeparatorV4(), true);
        _earners[provider].earnings += SafeCast.toUint128(paid);
    }

    /// @inheritdoc IConsumerVault
    function settleBatch(address provider, bytes calldata promises) external nonReentrant returns (uint256 paid) {
        paid = _settleAll(provider, promises);
        if (paid != 0) _earners[provider].earnings += SafeCast.toUint128(paid);
    }

    /// @inheritdoc IConsumerVault
    function settleRelayed(
        address provider,
        address relayer,
        bytes calldata promises,
        uint256 maxFee,
        uint256 fee,
        uint256 nonce,
        bytes calldata providerSignature
    ) external nonReentrant returns (uint256 paid) {
        // The provider chose who relays: a copy of the call sent by anyone else (a front-runner) fails here.
        if (msg.sender != relayer) revert RelayerNotChosen(provider, relayer, msg.sender);
        if (fee > maxFee) revert RelayFeeAboveCap(provider, fee, maxFee);
        _checkRelayed(provider, relayer, promises, maxFee, nonce, providerSignature);

        paid = _settleAll(provider, promises);
        if (fee > paid) revert RelayFeeAboveAmount(provider, fee, paid);

        uint256 payout = _earners[provider].earnings + paid - fee;
        _earners[provider] = Earner(0, SafeCast.toUint128(nonce + 1));
        address beneficiary = _registry.beneficiaryOf(provider);
        emit SettlementRelayed(provider, relayer, fee, nonce);
        emit EarningsPaid(provider, beneficiary, payout);

        if (fee != 0) _token.safeTransfer(relayer, fee);
        if (payout != 0) _token.safeTransfer(beneficiary, payout);
    }

    /// @inheritdoc IConsumerVault
    function withdrawEarnings(address provider) external nonReentrant returns (uint256 amount) {
        Earner storage earner = _earners[provider];
        amount = earner.earnings;
        if (amount == 0) revert NoEarnings(provider);
        earner.earnings = 0;
        address beneficiary = _registry.beneficiaryOf(provider);
        emit EarningsPaid(provider, beneficiary, amount);

        _token.safeTransfer(beneficiary, amount);
    }

    /// @inheritdoc IConsumerVault
    function requestExit() external {
        uint256 readyAt = block.timestamp + _challengePeriod;
        _vaults[msg.sender].exitReadyAt = uint64(readyAt);
        emit ExitRequested(msg.sender, readyAt);
    }

    /// @inheritdoc IConsumerVault
    function cancelExit() external {
        Vault storage v = _vaults[msg.sender];
        if (v.exitReadyAt == 0) revert ExitNotRequested(msg.sender);
        v.exitReadyAt = 0;
        emit ExitCancelled(msg.sender);
    }

    /// @inheritdoc IConsumerVault
    function withdraw() external nonReentrant returns (uint256 amount) {
        Vault memory v = _vaults[msg.sender];
        if (v.exitReadyAt == 0) revert ExitNotRequested(msg.sender);
        if (block.timestamp < v.exitReadyAt) revert ExitNotReady(msg.sender, v.exitReadyAt, block.timestamp);

        amount = uint256(v.balance) + v.escrow;
        delete _vaults[msg.sender];
        emit Withdrawn(msg.sender, amount);

        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IConsumerVault
    function vault(address consumer) external view returns (uint256 balance, uint256 escrow, uint256 exitReadyAt) {
        Vault memory v = _vaults[consumer];
        return (v.balance, v.escrow, v.exitReadyAt);
    }

    /// @inheritdoc IConsumerVault
    function settled(address consumer, address provider) external view returns (uint256) {
        return _settled[provider][consumer];
    }

    /// @inheritdoc IConsumerVault
    function earnings(address provider) external view returns (uint256) {
        return _earners[provider].earnings;
    }

    /// @inheritdoc IConsumerVault
    function relayNonce(address provider) external view returns (uint256) {
        return _earners[provider].relayNonce;
    }

    /// @inheritdoc IConsumerVault
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IConsumerVault
    function registry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc IConsumerVault
    function challengePeriod() external view returns (uint256) {
        return _challengePeriod;
    }

    /// @notice The EIP-712 domain separator promises and relayed settlements are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _deposit(address consumer, uint256 amount, uint256 escrow) private {
        _credit(consumer, amount, escrow);
        _token.safeTransferFrom(msg.sender, address(this), amount + escrow);
    }

    /// @dev Adds a deposit to `consumer`'s vault (its funder is the `from` of the token's Transfer).
    ///      The vault's word is `exitReadyAt (64) ‖ escrow (96) ‖ balance (96)`, read and written once.
    function _credit(address consumer, uint256 amount, uint256 escrow) private {
        if (amount + escrow == 0) revert VaultZeroDeposit(consumer);
        uint256 slot;
        uint256 word;
        assembly ("memory-safe") {
            mstore(0x00, consumer)
            mstore(0x20, _vaults.slot)
            slot := keccak256(0x00, 0x40)
            word := sload(slot)
        }
        uint256 newBalance = SafeCast.toUint96(uint96(word) + amount);
        uint256 escrowTotal = SafeCast.toUint96(uint96(word >> 96) + escrow);
        assembly ("memory-safe") {
            sstore(slot, or(newBalance, shl(96, escrowTotal))) // and no pending exit
        }
        emit Deposited(consumer, amount, escrow, newBalance, escrowTotal);
        if (word >> 192 != 0) emit ExitCancelled(consumer);
    }

    /// @dev Settles every packed promise in `promises`, skipping those that pay nothing.
    function _settleAll(address provider, bytes calldata promises) private returns (uint256 paid) {
        if (promises.length % PROMISE_BYTES != 0) revert PromisesMalformed(promises.length);
        // Once per call, not per promise: the domain separator and the provider's map of pairs.
        bytes32 domain = _domainSeparatorV4();
        uint256 pairs = _pairsOf(provider);
        uint256 at = _offsetOf(promises);
        uint256 end = at + promises.length;
        // Unchecked: each promise pays less than 2^96, and `at` stays within calldata.
        unchecked {
            for (; at < end; at += PROMISE_BYTES) {
                paid += _settle(provider, pairs, at, domain, false);
            }
        }
    }

    /// @dev The storage slot of `_settled[provider]` (the base of the provider's pairs).
    function _pairsOf(address provider) private pure returns (uint256 pairs) {
        assembly ("memory-safe") {
            mstore(0x00, provider)
            mstore(0x20, _settled.slot)
            pairs := keccak256(0x00, 0x40)
        }
    }

    /// @dev The storage slot of `map[key]` for a mapping whose base slot is `base`.
    function _slotOf(address key, uint256 base) private pure returns (uint256 slot) {
        assembly ("memory-safe") {
            mstore(0x00, key)
            mstore(0x20, base)
            slot := keccak256(0x00, 0x40)
        }
    }

    function _offsetOf(bytes calldata data) private pure returns (uint256 offset) {
        assembly ("memory-safe") {
            offset := data.offset
        }
    }

    /// @dev The packed promise at calldata offset `at`: its consumer, amount and compact signature.
    function _promiseAt(uint256 at) private pure returns (address consumer, uint256 amount, bytes32 r, bytes32 vs) {
        assembly ("memory-safe") {
            let head := calldataload(at)
            consumer := shr(96, head)
            amount := and(head, 0xffffffffffffffffffffffff)
            r := calldataload(add(at, 0x20))
            vs := calldataload(add(at, 0x40))
        }
    }

    /// @dev The provider signed this batch, for this relayer, with this fee cap, under its current nonce.
    function _checkRelayed(
        address provider,
        address relayer,
        bytes calldata promises,
        uint256 maxFee,
        uint256 nonce,
        bytes calldata providerSignature
    ) private view {
        uint256 expected = _earners[provider].relayNonce;
        if (nonce != expected) revert RelayNonceInvalid(provider, expected, nonce);
        if (promises.length % PROMISE_BYTES != 0) revert PromisesMalformed(promises.length);
        bytes32[] memory claims = new bytes32[](promises.length / PROMISE_BYTES);
        uint256 at = _offsetOf(promises);
        for (uint256 i; i < claims.length; ++i) {
            (address consumer, uint256 amount,,) = _promiseAt(at + i * PROMISE_BYTES);
            claims[i] = keccak256(abi.encode(CLAIM_TYPEHASH, consumer, amount));
        }
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(RELAYED_TYPEHASH, provider, relayer, keccak256(abi.encodePacked(claims)), maxFee, nonce))
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, providerSignature);
        if (err != ECDSA.RecoverError.NoError || signer != provider) revert RelaySignatureInvalid(provider, signer);
    }

    /// @dev Checks the packed promise at calldata offset `at` and moves what it pays from the vault to
    ///      the pair's settled figure; the caller credits the provider. `pairs` is `_settled[provider]`'s
    ///      slot, `domain` the EIP-712 domain separator. `strict`: revert rather than pay nothing.
    ///      The common case reads and writes two slots, each once: the pair's and the vault's (whose
    ///      balance is its low 96 bits, so paying `owed <= balance` is one subtraction from the word).
    function _settle(address provider, uint256 pairs, uint256 at, bytes32 domain, bool strict) private returns (uint256 paid) {
        (address consumer, uint256 amount, uint256 pairSlot, uint256 done) = _signedPromiseAt(provider, pairs, at, domain);
        if (amount <= done) {
            if (strict) revert PromiseNotAboveSettled(consumer, provider, amount, done);
            return 0;
        }
        uint256 owed;
        unchecked {
            owed = amount - done; // amount > done
        }
        uint256 vaultSlot;
        uint256 vaultWord;
        assembly ("memory-safe") {
            mstore(0x00, consumer)
            mstore(0x20, _vaults.slot)
            vaultSlot := keccak256(0x00, 0x40)
            vaultWord := sload(vaultSlot)
        }
        if (owed <= uint96(vaultWord)) {
            paid = owed;
            assembly ("memory-safe") {
                sstore(vaultSlot, sub(vaultWord, owed))
            }
        } else {
            paid = _overdraw(consumer, provider, owed, strict);
            if (paid == 0) return 0;
        }
        uint256 total;
        unchecked {
            total = done + paid; // at most `amount`, below 2^96
        }
        assembly ("memory-safe") {
            sstore(pairSlot, total)
        }
        emit PromiseSettled(consumer, provider, paid, total);
    }

    /// @dev The packed promise at calldata offset `at`, once its signature is checked: its consumer,
    ///      amount, and the slot and value of what the pair settled so far. One block, so the
    ///      per-promise work costs the opcodes it needs and no more: read the packed promise, hash it as
    ///      EIP-712 typed data (the digest `_hashTypedDataV4` gives), recover its signer (a high-s
    ///      signature recovers nobody: EIP-2), read the pair's slot.
    function _signedPromiseAt(address provider, uint256 pairs, uint256 at, bytes32 domain)
        private
        view
        returns (address consumer, uint256 amount, uint256 pairSlot, uint256 done)
    {
        address signer;
        bytes32 typeHash = PROMISE_TYPEHASH;
        assembly ("memory-safe") {
            let head := calldataload(at)
            consumer := shr(96, head)
            amount := and(head, 0xffffffffffffffffffffffff)
            let m := mload(0x40)
            mstore(m, typeHash)
            mstore(add(m, 0x20), consumer)
            mstore(add(m, 0x40), provider)
            mstore(add(m, 0x60), amount)
            let structHash := keccak256(m, 0x80)
            mstore(m, shl(240, 0x1901))
            mstore(add(m, 0x02), domain)
            mstore(add(m, 0x22), structHash)
            let digest := keccak256(m, 0x42)
            let vs := calldataload(add(at, 0x40))
            let s := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
            mstore(m, digest)
            mstore(add(m, 0x20), add(shr(255, vs), 27))
            mstore(add(m, 0x40), calldataload(add(at, 0x20)))
            mstore(add(m, 0x60), s)
            // The precompile writes nothing for a signature that recovers no key: the word stays 0.
            mstore(0x00, 0)
            if iszero(gt(s, HALF_N)) { pop(staticcall(gas(), 0x01, m, 0x80, 0x00, 0x20)) }
            signer := mload(0x00)
            mstore(0x00, consumer)
            mstore(0x20, pairs)
            pairSlot := keccak256(0x00, 0x40)
            done := sload(pairSlot)
        }
        if (signer != consumer || signer == address(0)) revert PromiseSignatureInvalid(consumer, signer);
    }

    /// @dev `owed` is above the vault's balance: pays the balance and what the escrow may add.
    function _overdraw(address consumer, address provider, uint256 owed, bool strict) private returns (uint256 paid) {
        Vault memory v = _vaults[consumer];
        if (v.balance == 0 && v.escrow == 0) {
            if (strict) revert VaultEmpty(consumer, owed);
            return 0;
        }
        // Overdraft: the escrow pays at most half of itself, so a consumer who overdraws to a
        // provider it controls still loses the other half; the rest stays locked for good.
        uint256 fromEscrow = owed - v.balance;
        if (fromEscrow > v.escrow / 2) fromEscrow = v.escrow / 2;
        paid = v.balance + fromEscrow;
        _vaults[consumer] = Vault(0, 0, v.exitReadyAt);
        emit EscrowForfeited(consumer, provider, fromEscrow, v.escrow - fromEscrow);
    }
}
