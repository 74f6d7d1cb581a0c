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
import {IPaymentChannels} from "./interfaces/IPaymentChannels.sol";

/// @title PaymentChannels
/// @notice Unidirectional MYST channels from consumers to providers, paid with cumulative promises.
/// @dev A channel is one storage slot (balance, settled, withdrawal time), so a settlement reads and
///      writes it once. uint96 holds 7.9e28 wei, far above any MYST supply.
contract PaymentChannels is IPaymentChannels, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 private constant PROMISE_TYPEHASH = keccak256("Promise(bytes32 channelId,uint256 amount)");

    struct Channel {
        uint96 balance;
        uint96 settled;
        uint64 withdrawalReadyAt;
    }

    IERC20 private immutable _token;
    IIdentityRegistry private immutable _registry;
    uint64 private immutable _challengePeriod;

    mapping(bytes32 channelId => Channel) private _channels;

    /// @param token_ the MYST token
    /// @param registry_ the identity registry
    /// @param challengePeriod_ seconds between a withdrawal request and the withdrawal
    constructor(IERC20 token_, IIdentityRegistry registry_, uint64 challengePeriod_)
        EIP712("MystPaymentChannels", "1")
    {
        _token = token_;
        _registry = registry_;
        _challengePeriod = challengePeriod_;
    }

    /// @inheritdoc IPaymentChannels
    function channelId(address consumer, address provider) public pure returns (bytes32) {
        return keccak256(abi.encode(consumer, provider));
    }

    /// @inheritdoc IPaymentChannels
    function deposit(address consumer, address provider, uint256 amount) external nonReentrant {
        _deposit(consumer, provider, amount);
    }

    /// @inheritdoc IPaymentChannels
    function depositWithPermit(
        address consumer,
        address provider,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        // A front-runner may have used the permit already; the allowance it set still serves.
        try IERC20Permit(address(_token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(consumer, provider, amount);
    }

    /// @inheritdoc IPaymentChannels
    function settle(address consumer, address provider, uint256 amount, bytes calldata signature)
        external
        nonReentrant
        returns (uint256 paid)
    {
        bytes32 id = channelId(consumer, provider);
        Channel memory ch = _channels[id];
        if (amount <= ch.settled) revert PromiseNotAboveSettled(id, amount, ch.settled);

        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(PROMISE_TYPEHASH, id, amount)));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != consumer) {
            revert PromiseSignatureInvalid(id, consumer, recovered);
        }

        uint256 owed = amount - ch.settled;
        if (ch.balance == 0) revert ChannelInsufficientBalance(id, 0, owed);
        paid = owed < ch.balance ? owed : ch.balance;
        address beneficiary = _registry.beneficiaryOf(provider);

        ch.balance -= uint96(paid);
        ch.settled = SafeCast.toUint96(ch.settled + paid);
        _channels[id] = ch;
        emit PromiseSettled(id, beneficiary, paid, ch.settled);

        _token.safeTransfer(beneficiary, paid);
    }

    /// @inheritdoc IPaymentChannels
    function requestWithdrawal(address provider) external {
        bytes32 id = channelId(msg.sender, provider);
        uint256 readyAt = block.timestamp + _challengePeriod;
        _channels[id].withdrawalReadyAt = uint64(readyAt);
        emit WithdrawalRequested(id, readyAt);
    }

    /// @inheritdoc IPaymentChannels
    function cancelWithdrawal(address provider) external {
        bytes32 id = channelId(msg.sender, provider);
        Channel storage ch = _channels[id];
        if (ch.withdrawalReadyAt == 0) revert WithdrawalNotRequested(id);
        ch.withdrawalReadyAt = 0;
        emit WithdrawalCancelled(id);
    }

    /// @inheritdoc IPaymentChannels
    function withdraw(address provider) external nonReentrant returns (uint256 amount) {
        bytes32 id = channelId(msg.sender, provider);
        Channel storage ch = _channels[id];
        uint256 readyAt = ch.withdrawalReadyAt;
        if (readyAt == 0) revert WithdrawalNotRequested(id);
        if (block.timestamp < readyAt) revert WithdrawalNotReady(id, readyAt, block.timestamp);

        amount = ch.balance;
        ch.balance = 0;
        ch.withdrawalReadyAt = 0;
        emit Withdrawn(id, msg.sender, amount);

        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IPaymentChannels
    function channel(bytes32 channelId_)
        external
        view
        returns (uint256 balance, uint256 settled, uint256 withdrawalReadyAt)
    {
        Channel memory ch = _channels[channelId_];
        return (ch.balance, ch.settled, ch.withdrawalReadyAt);
    }

    /// @inheritdoc IPaymentChannels
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IPaymentChannels
    function registry() external view returns (address) {
        return address(_registry);
    }

    /// @inheritdoc IPaymentChannels
    function challengePeriod() external view returns (uint256) {
        return _challengePeriod;
    }

    /// @notice The EIP-712 domain separator promises for this contract are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _deposit(address consumer, address provider, uint256 amount) private {
        if (!_registry.isRegistered(consumer)) revert ChannelPartyNotRegistered(consumer);
        if (!_registry.isRegistered(provider)) revert ChannelPartyNotRegistered(provider);
        bytes32 id = channelId(consumer, provider);
        if (amount == 0) revert ChannelZeroDeposit(id);

        Channel storage ch = _channels[id];
        uint96 balance = SafeCast.toUint96(ch.balance + amount);
        bool cancelsWithdrawal = ch.withdrawalReadyAt != 0;
        ch.balance = balance;
        if (cancelsWithdrawal) ch.withdrawalReadyAt = 0;
        emit ChannelDeposited(id, consumer, provider, msg.sender, amount, balance);
        if (cancelsWithdrawal) emit WithdrawalCancelled(id);

        _token.safeTransferFrom(msg.sender, address(this), amount);
    }
}
