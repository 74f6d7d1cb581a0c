// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPaymentChannels
/// @notice One MYST channel per (consumer, provider). The consumer deposits; during a session it signs
///         EIP-712 promises `Promise(bytes32 channelId,uint256 amount)` for the cumulative amount it
///         owes; anyone may settle the latest promise, paying the provider's beneficiary. The consumer
///         can leave alone: request a withdrawal, wait the challenge period (in which the provider
///         can still settle), then withdraw what is left.
interface IPaymentChannels {
    /// @notice A party of the channel is not a registered identity.
    error ChannelPartyNotRegistered(address party);
    /// @notice A deposit of zero.
    error ChannelZeroDeposit(bytes32 channelId);
    /// @notice The promise is not above what the channel has already settled: it pays nothing.
    error PromiseNotAboveSettled(bytes32 channelId, uint256 amount, uint256 settled);
    /// @notice The promise was not signed by the channel's consumer.
    error PromiseSignatureInvalid(bytes32 channelId, address consumer, address recovered);
    /// @notice The channel holds nothing to pay `needed` with.
    error ChannelInsufficientBalance(bytes32 channelId, uint256 balance, uint256 needed);
    /// @notice No withdrawal is pending on the channel.
    error WithdrawalNotRequested(bytes32 channelId);
    /// @notice The challenge period has not passed yet.
    error WithdrawalNotReady(bytes32 channelId, uint256 readyAt, uint256 now_);

    /// @notice `funder` added `amount` to the channel; it now holds `balance`.
    event ChannelDeposited(
        bytes32 indexed channelId, address indexed consumer, address indexed provider, address funder, uint256 amount, uint256 balance
    );
    /// @notice A promise was settled: `paid` went to `beneficiary`; the channel has settled `settled` in all.
    event PromiseSettled(bytes32 indexed channelId, address indexed beneficiary, uint256 paid, uint256 settled);
    /// @notice The consumer asked to withdraw; it can do so from `readyAt`.
    event WithdrawalRequested(bytes32 indexed channelId, uint256 readyAt);
    /// @notice A pending withdrawal was cancelled (explicitly or by a deposit).
    event WithdrawalCancelled(bytes32 indexed channelId);
    /// @notice The consumer took `amount` back; the channel is empty.
    event Withdrawn(bytes32 indexed channelId, address indexed consumer, uint256 amount);

    /// @notice The id of the channel between `consumer` and `provider`: keccak256(abi.encode(consumer, provider)).
    function channelId(address consumer, address provider) external pure returns (bytes32);

    /// @notice Adds `amount` MYST, pulled from the caller (who must have approved it), to the channel
    ///         of `consumer` with `provider`. Cancels a pending withdrawal.
    /// @dev Both parties must be registered identities. Anyone may fund any channel.
    function deposit(address consumer, address provider, uint256 amount) external;

    /// @notice `deposit` with an ERC-2612 permit signed by the caller instead of a prior approval.
    /// @dev A permit that fails (e.g. already used by a front-runner) is ignored when the allowance
    ///      is already sufficient, as OpenZeppelin recommends.
    function depositWithPermit(
        address consumer,
        address provider,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;

    /// @notice Settles a consumer's promise for the cumulative `amount`: pays `amount − settled`, capped
    ///         at the balance, to the provider's beneficiary. Anyone may submit it.
    /// @dev An over-balance promise pays the balance and stays settleable after a top-up.
    /// @return paid what this call paid
    function settle(address consumer, address provider, uint256 amount, bytes calldata signature)
        external
        returns (uint256 paid);

    /// @notice Starts the unilateral exit of the calling consumer from its channel with `provider`.
    function requestWithdrawal(address provider) external;

    /// @notice Cancels the calling consumer's pending withdrawal from its channel with `provider`.
    function cancelWithdrawal(address provider) external;

    /// @notice After the challenge period, sends what is left in the channel back to the calling consumer.
    function withdraw(address provider) external returns (uint256 amount);

    /// @notice The channel's state.
    /// @return balance what it holds now
    /// @return settled the cumulative amount paid to the provider so far
    /// @return withdrawalReadyAt when a pending withdrawal can be made (0 when none is pending)
    function channel(bytes32 channelId_)
        external
        view
        returns (uint256 balance, uint256 settled, uint256 withdrawalReadyAt);

    /// @notice The MYST token channels hold.
    function token() external view returns (address);

    /// @notice The identity registry both parties of a channel must be registered in.
    function registry() external view returns (address);

    /// @notice The challenge period, in seconds, between a withdrawal request and the withdrawal.
    function challengePeriod() external view returns (uint256);
}
