// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
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
///      token. uint96 holds 7.9e28 wei, far above any MYST supply.
contract ConsumerVault is IConsumerVault, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 private constant PROMISE_TYPEHASH = keccak256("Promise(address consumer,address provider,uint256 amount)");
    bytes32 private constant CLAIM_TYPEHASH = keccak256("Claim(address consumer,uint256 amount)");
    bytes32 private constant RELAYED_TYPEHASH = keccak256(
        "RelayedSettlement(address provider,address relayer,Claim[] claims,uint256 maxFee,uint256 nonce)Claim(address consumer,uint256 amount)"
    );

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

    /// @inheritdoc IConsumerVault
    function settle(address provider, SignedPromise calldata promise_) external nonReentrant returns (uint256 paid) {
        paid = _settle(provider, promise_, true);
        _earners[provider].earnings += SafeCast.toUint128(paid);
    }

    /// @inheritdoc IConsumerVault
    function settleBatch(address provider, SignedPromise[] calldata promises) external nonReentrant returns (uint256 paid) {
        for (uint256 i; i < promises.length; ++i) {
            paid += _settle(provider, promises[i], false);
        }
        _earners[provider].earnings += SafeCast.toUint128(paid);
    }

    /// @inheritdoc IConsumerVault
    function settleRelayed(
        address provider,
        address relayer,
        SignedPromise[] calldata promises,
        uint256 maxFee,
        uint256 fee,
        uint256 nonce,
        bytes calldata providerSignature
    ) external nonReentrant returns (uint256 paid) {
        // The provider chose who relays: a copy of the call sent by anyone else (a front-runner) fails here.
        if (msg.sender != relayer) revert RelayerNotChosen(provider, relayer, msg.sender);
        if (fee > maxFee) revert RelayFeeAboveCap(provider, fee, maxFee);
        _checkRelayed(provider, relayer, promises, maxFee, nonce, providerSignature);

        for (uint256 i; i < promises.length; ++i) {
            paid += _settle(provider, promises[i], false);
        }
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
        if (amount + escrow == 0) revert VaultZeroDeposit(consumer);
        Vault storage v = _vaults[consumer];
        uint96 balance = SafeCast.toUint96(v.balance + amount);
        uint96 escrowTotal = SafeCast.toUint96(v.escrow + escrow);
        bool cancelsExit = v.exitReadyAt != 0;
        (v.balance, v.escrow, v.exitReadyAt) = (balance, escrowTotal, 0);
        emit Deposited(consumer, msg.sender, amount, escrow, balance, escrowTotal);
        if (cancelsExit) emit ExitCancelled(consumer);

        _token.safeTransferFrom(msg.sender, address(this), amount + escrow);
    }

    /// @dev The provider signed this batch, for this relayer, with this fee cap, under its current nonce.
    function _checkRelayed(
        address provider,
        address relayer,
        SignedPromise[] calldata promises,
        uint256 maxFee,
        uint256 nonce,
        bytes calldata providerSignature
    ) private view {
        uint256 expected = _earners[provider].relayNonce;
        if (nonce != expected) revert RelayNonceInvalid(provider, expected, nonce);
        bytes32[] memory claims = new bytes32[](promises.length);
        for (uint256 i; i < promises.length; ++i) {
            claims[i] = keccak256(abi.encode(CLAIM_TYPEHASH, promises[i].consumer, promises[i].amount));
        }
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(RELAYED_TYPEHASH, provider, relayer, keccak256(abi.encodePacked(claims)), maxFee, nonce))
        );
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, providerSignature);
        if (err != ECDSA.RecoverError.NoError || signer != provider) revert RelaySignatureInvalid(provider, signer);
    }

    /// @dev Checks the promise and moves what it pays from the vault to the pair's settled figure;
    ///      the caller credits the provider. `strict`: revert rather than pay nothing.
    function _settle(address provider, SignedPromise calldata p, bool strict) private returns (uint256 paid) {
        address consumer = p.consumer;
        uint256 amount = p.amount;
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(PROMISE_TYPEHASH, consumer, provider, amount)));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, p.r, p.vs);
        if (err != ECDSA.RecoverError.NoError || signer != consumer) revert PromiseSignatureInvalid(consumer, signer);

        uint256 done = _settled[provider][consumer];
        if (amount <= done) {
            if (strict) revert PromiseNotAboveSettled(consumer, provider, amount, done);
            return 0;
        }
        uint256 owed = amount - done;
        Vault memory v = _vaults[consumer];
        if (owed <= v.balance) {
            paid = owed;
            _vaults[consumer].balance = v.balance - uint96(owed);
        } else {
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
        uint256 total = done + paid;
        _settled[provider][consumer] = total;
        emit PromiseSettled(consumer, provider, paid, total);
    }
}
