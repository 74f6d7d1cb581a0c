// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IConsumerVault
/// @notice One MYST vault per consumer pays any provider. The vault holds a balance and a penalty
///         escrow. During a session the consumer signs EIP-712 promises
///         `Promise(address consumer,address provider,uint256 amount)` for the cumulative amount it owes
///         that provider (one ledger per pair, across sessions); a provider settles the increase over
///         what its pair has settled against the vault. A promise the balance cannot cover is an
///         overdraft: the escrow pays the provider up to half of it and the whole escrow is forfeited.
///         The consumer leaves alone: request an exit, wait the challenge period (in which providers
///         can still settle), withdraw the rest.
///         Promises are submitted packed, 96 bytes each, back to back:
///         `consumer (20 bytes) ‖ amount (uint96, 12 bytes) ‖ r (32) ‖ yParity‖s (32)`, the consumer's
///         signature in EIP-2098 compact form. An amount is cumulative wei and fits 96 bits (7.9e28 wei).
///         The cheapest deposit is one token call, `token.transferAndCall(vault, value, data)` (ERC-1363):
///         the token calls `onTransferReceived` here after moving `value` (the vault's `fallback` answers
///         it: the hook is not declared, so that no ABI decoder runs on every deposit). Empty `data` adds `value` to
///         the sender's own balance; `abi.encode(consumer, escrow)` adds `value − escrow` to `consumer`'s
///         balance and `escrow` to its escrow. Only the token may call the hook (`DepositNotFromToken`).
interface IConsumerVault {
    /// @notice A deposit that adds nothing.
    error VaultZeroDeposit(address consumer);
    /// @notice `onTransferReceived` was called by `caller`, not by the vault's token.
    error DepositNotFromToken(address caller);
    /// @notice A `transferAndCall` deposit's data is neither empty nor `abi.encode(consumer, escrow)` (64 bytes).
    error DepositDataMalformed(uint256 length);
    /// @notice A `transferAndCall` deposit asks for more escrow than it transferred.
    error DepositEscrowAboveValue(address consumer, uint256 escrow, uint256 value);
    /// @notice Packed promises whose length is not a multiple of 96 bytes (exactly 96 for `settle`).
    error PromisesMalformed(uint256 length);
    /// @notice The promise is not above what the pair has already settled: it pays nothing.
    error PromiseNotAboveSettled(address consumer, address provider, uint256 amount, uint256 settled);
    /// @notice The promise was not signed by the consumer it names (`recovered` is zero for a malformed one).
    error PromiseSignatureInvalid(address consumer, address recovered);
    /// @notice The vault holds neither balance nor escrow to pay `owed` with.
    error VaultEmpty(address consumer, uint256 owed);
    /// @notice No exit is pending on the vault.
    error ExitNotRequested(address consumer);
    /// @notice The challenge period has not passed yet.
    error ExitNotReady(address consumer, uint256 readyAt, uint256 now_);
    /// @notice The provider has no credited earnings to pay out.
    error NoEarnings(address provider);
    /// @notice The relayer asked for a fee above the cap the provider signed.
    error RelayFeeAboveCap(address provider, uint256 fee, uint256 maxFee);
    /// @notice The relayer asked for a fee above what the settlement paid (the fee comes out of it).
    error RelayFeeAboveAmount(address provider, uint256 fee, uint256 paid);
    /// @notice The relayed settlement carries a nonce other than the provider's current one.
    error RelayNonceInvalid(address provider, uint256 expected, uint256 given);
    /// @notice The relayed settlement names `relayer` as the only account that may submit it (and take
    ///         its fee); `sender` is another (e.g. a front-runner that copied the relayer's transaction).
    error RelayerNotChosen(address provider, address relayer, address sender);
    /// @notice The relayed settlement was not signed by the provider.
    error RelaySignatureInvalid(address provider, address recovered);

    /// @notice `amount` was added to the balance and `escrow` to the escrow of `consumer`'s vault. Who paid
    ///         is the `from` of the token's `Transfer` to the vault in the same transaction, and the totals
    ///         are `vault(consumer)`: the event repeats neither (each word of an event costs 256 gas on
    ///         every deposit, and a deposit is the operation every consumer pays for).
    event Deposited(address indexed consumer, uint256 amount, uint256 escrow);
    /// @notice A promise was settled: `paid` was credited to `provider`; the pair has settled `settled` in all.
    event PromiseSettled(address indexed consumer, address indexed provider, uint256 paid, uint256 settled);
    /// @notice An overdraft: the escrow paid `paidToProvider` of it to `provider`; `burned` stays locked forever.
    event EscrowForfeited(address indexed consumer, address indexed provider, uint256 paidToProvider, uint256 burned);
    /// @notice The consumer asked to leave; it can withdraw from `readyAt`.
    event ExitRequested(address indexed consumer, uint256 readyAt);
    /// @notice A pending exit was cancelled (explicitly or by the consumer's own deposit).
    event ExitCancelled(address indexed consumer);
    /// @notice The consumer took `amount` (balance and escrow) back; the vault is empty.
    event Withdrawn(address indexed consumer, uint256 amount);
    /// @notice `amount` of `provider`'s earnings were paid to its beneficiary.
    event EarningsPaid(address indexed provider, address indexed beneficiary, uint256 amount);
    /// @notice A relayer submitted `provider`'s signed settlement and took `fee` from it.
    event SettlementRelayed(address indexed provider, address indexed relayer, uint256 fee, uint256 nonce);

    /// @notice Adds `amount` to the balance and `escrow` to the escrow of `consumer`'s vault, pulled
    ///         from the caller (who must have approved the sum). Cancels a pending exit when the caller is
    ///         the consumer; anyone else's deposit leaves it running.
    /// @dev Anyone may fund any vault.
    function deposit(address consumer, uint256 amount, uint256 escrow) external;

    /// @notice `deposit` with an ERC-2612 permit for exactly `amount + escrow`, signed by the caller.
    /// @dev A permit that fails (e.g. already used by a front-runner) is ignored when the allowance
    ///      is already sufficient, as OpenZeppelin recommends.
    function depositWithPermit(address consumer, uint256 amount, uint256 escrow, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;

    /// @notice Settles one promise to `provider`: credits `amount − settled` (capped by the vault,
    ///         escrow included on overdraft) to the provider's earnings. Anyone may submit it.
    /// @dev Reverts when the promise pays nothing (not above settled, empty vault).
    /// @return paid what this call credited
    /// @param promise_ one packed promise (96 bytes)
    function settle(address provider, bytes calldata promise_) external returns (uint256 paid);

    /// @notice Settles promises of many consumers to one provider in one transaction. A promise that
    ///         pays nothing (already settled, empty vault) is skipped; a bad signature reverts the batch.
    /// @return paid the sum credited to the provider
    /// @param promises packed promises (96 bytes each)
    function settleBatch(address provider, bytes calldata promises) external returns (uint256 paid);

    /// @notice A batch the provider signed (EIP-712 `RelayedSettlement(address provider,address relayer,
    ///         Claim[] claims,uint256 maxFee,uint256 nonce)Claim(address consumer,uint256 amount)`), submitted
    ///         by the relayer it names: the relayer is paid `fee` (at most `maxFee`) out of the settled
    ///         amount, the provider's beneficiary gets the rest and all earnings credited before. The
    ///         provider needs no ETH.
    /// @dev Only `relayer` may submit it (`RelayerNotChosen` otherwise): a copy of a pending call sent by
    ///      another account with a higher tip cannot take the fee or make the relayer's transaction fail.
    /// @return paid the sum the promises paid (fee included)
    function settleRelayed(
        address provider,
        address relayer,
        bytes calldata promises,
        uint256 maxFee,
        uint256 fee,
        uint256 nonce,
        bytes calldata providerSignature
    ) external returns (uint256 paid);

    /// @notice Pays `provider`'s credited earnings to its registered beneficiary. Anyone may call it.
    function withdrawEarnings(address provider) external returns (uint256 amount);

    /// @notice Starts the calling consumer's exit; promises still settle during the challenge period.
    function requestExit() external;

    /// @notice Cancels the calling consumer's pending exit.
    function cancelExit() external;

    /// @notice After the challenge period, sends the vault's balance and escrow back to the calling consumer.
    function withdraw() external returns (uint256 amount);

    /// @notice The vault of `consumer`.
    /// @return balance what pays promises
    /// @return escrow the penalty escrow an overdraft forfeits
    /// @return exitReadyAt when a pending exit can be withdrawn (0 when none is pending)
    function vault(address consumer) external view returns (uint256 balance, uint256 escrow, uint256 exitReadyAt);

    /// @notice The cumulative amount settled on the pair (consumer, provider).
    function settled(address consumer, address provider) external view returns (uint256);

    /// @notice What `provider` has earned and not yet been paid.
    function earnings(address provider) external view returns (uint256);

    /// @notice The nonce the next relayed settlement of `provider` must carry.
    function relayNonce(address provider) external view returns (uint256);

    /// @notice The MYST token vaults hold.
    function token() external view returns (address);

    /// @notice The identity registry that names each provider's beneficiary.
    function registry() external view returns (address);

    /// @notice The challenge period, in seconds, between an exit request and the withdrawal.
    function challengePeriod() external view returns (uint256);
}
