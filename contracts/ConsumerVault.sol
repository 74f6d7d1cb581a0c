// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
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

    /// @notice A deposit by `token.transferAndCall(vault, value, data)`: the token's ERC-1363 call
    ///         `onTransferReceived(address operator, address from, uint256 value, bytes data)`, answered with
    ///         its selector (see `IConsumerVault`). Any other call reverts without data, as a call to a
    ///         function a contract does not have does.
    /// @dev The hook is read here rather than by a declared function: its ABI decoder and the answer's
    ///      encoding cost about 400 gas of every deposit (docs/gas.md). The same checks, in the same order:
    ///      the call laid out as `abi.encodeCall` lays it out (`from` a clean address, `data` within the
    ///      calldata; reverts without data otherwise, as the decoder did; stricter than the decoder, `data`
    ///      must be at offset 0x80, where every encoder puts it), the token as the caller, then the data's.
    ///      Only the token may call it, and it makes no call out.
    fallback() external {
        if (msg.sig != IERC1363Receiver.onTransferReceived.selector) revert();
        uint256 from;
        uint256 value;
        uint256 length;
        bool wellFormed;
        assembly ("memory-safe") {
            from := calldataload(0x24)
            value := calldataload(0x44)
            length := calldataload(0x84)
            wellFormed := and(
                and(iszero(shr(160, from)), eq(calldataload(0x64), 0x80)),
                and(lt(length, calldatasize()), iszero(gt(add(0xa4, length), calldatasize())))
            )
        }
        if (!wellFormed) revert();
        if (msg.sender != address(_token)) revert DepositNotFromToken(msg.sender);
        if (length == 0) {
            _creditOwn(address(uint160(from)), value);
        } else {
            if (length != 64) revert DepositDataMalformed(length);
            (address consumer, uint256 escrow) = abi.decode(msg.data[0xa4:0xe4], (address, uint256));
            if (escrow > value) revert DepositEscrowAboveValue(consumer, escrow, value);
            _credit(consumer, address(uint160(from)), value - escrow, escrow);
        }
        bytes4 answer = IERC1363Receiver.onTransferReceived.selector;
        assembly ("memory-safe") {
            mstore(0x00, answer)
            return(0x00, 0x20)
        }
    }

    /// @dev Refused while a `nonReentrant` function holds control, as `nonReentrant` refuses it, but without
    ///      setting the guard (its two TSTOREs, 200 gas a call): for `settle` and `settleBatch` only, which hand
    ///      control to no contract on any path (their one call is to the ecrecover precompile, which runs no
    ///      code; the test "hands control to no contract" checks every path's trace), so nothing can re-enter
    ///      while they run. A function that calls a contract (the token, the registry) takes `nonReentrant`.
    modifier notEntered() {
        if (_reentrancyGuardEntered()) revert ReentrancyGuardReentrantCall();
        _;
    }

    /// @inheritdoc IConsumerVault
    function settle(address provider, bytes calldata promise_) external notEntered returns (uint256 paid) {
        if (promise_.length != PROMISE_BYTES) revert PromisesMalformed(promise_.length);
        bytes32 domain = _domainSeparatorV4();
        uint256 pairs = _pairsOf(provider);
        uint256 at = _offsetOf(promise_);
        uint256 end;
        unchecked {
            end = at + PROMISE_BYTES; // within calldata: its length was checked
        }
        (uint256 stoppedAt, uint256 run) = _settleRun(provider, pairs, at, end, domain);
        paid = stoppedAt == at ? _settleUncommon(provider, at, true) : run;
        _addEarnings(provider, paid);
    }

    /// @inheritdoc IConsumerVault
    function settleBatch(address provider, bytes calldata promises) external notEntered returns (uint256 paid) {
        paid = _settleAll(provider, promises);
        if (paid != 0) _addEarnings(provider, paid);
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
        _credit(consumer, msg.sender, amount, escrow);
        _token.safeTransferFrom(msg.sender, address(this), amount + escrow);
    }

    /// @dev Adds a deposit by `funder` to `consumer`'s vault. The vault's word is
    ///      `exitReadyAt (64) ‖ escrow (96) ‖ balance (96)`, read and written once. Only the consumer's
    ///      own deposit cancels its pending exit: if anyone's did, one wei a challenge period (or one
    ///      sent just before the withdrawal) would hold a leaving consumer's money in the vault for good.
    function _credit(address consumer, address funder, uint256 amount, uint256 escrow) private {
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
        uint256 exitReadyAt = funder == consumer ? 0 : word >> 192;
        assembly ("memory-safe") {
            sstore(slot, or(or(newBalance, shl(96, escrowTotal)), shl(192, exitReadyAt)))
        }
        emit Deposited(consumer, amount, escrow);
        if (word >> 192 != exitReadyAt) emit ExitCancelled(consumer);
    }

    /// @dev `_credit(consumer, consumer, amount, 0)` for the common deposit (a consumer's own
    ///      `transferAndCall` without data), with the same checks and errors in fewer steps: the escrow
    ///      is kept as it is and, the funder being the consumer, a pending exit is cancelled.
    function _creditOwn(address consumer, uint256 amount) private {
        uint256 slot;
        uint256 word;
        assembly ("memory-safe") {
            mstore(0x00, consumer)
            mstore(0x20, _vaults.slot)
            slot := keccak256(0x00, 0x40)
            word := sload(slot)
        }
        if (amount == 0) revert VaultZeroDeposit(consumer);
        uint256 newBalance = SafeCast.toUint96(uint96(word) + amount);
        assembly ("memory-safe") {
            // Keep the escrow (bits 96..191), replace the balance, clear exitReadyAt (bits 192..255).
            sstore(slot, or(and(word, shl(96, 0xffffffffffffffffffffffff)), newBalance))
        }
        bytes32 deposited = Deposited.selector;
        assembly ("memory-safe") {
            // emit Deposited(consumer, amount, 0), from the scratch space (no free-memory bookkeeping)
            mstore(0x00, amount)
            mstore(0x20, 0)
            log2(0x00, 0x40, deposited, consumer)
        }
        if (word >> 192 != 0) emit ExitCancelled(consumer);
    }

    /// @dev Settles every packed promise in `promises`, skipping those that pay nothing: runs of common
    ///      promises in `_settleRun`, each other one (an error, a skip, an overdraft) in `_settleUncommon`.
    function _settleAll(address provider, bytes calldata promises) private returns (uint256 paid) {
        if (promises.length % PROMISE_BYTES != 0) revert PromisesMalformed(promises.length);
        // Once per call, not per promise: the domain separator and the provider's map of pairs.
        bytes32 domain = _domainSeparatorV4();
        uint256 pairs = _pairsOf(provider);
        uint256 at = _offsetOf(promises);
        // Unchecked: each promise pays less than 2^96, and `at` stays within calldata.
        unchecked {
            uint256 end = at + promises.length;
            while (true) {
                uint256 run;
                (at, run) = _settleRun(provider, pairs, at, end, domain);
                paid += run;
                if (at == end) break;
                paid += _settleUncommon(provider, at, false);
                at += PROMISE_BYTES;
            }
        }
    }

    /// @dev Settles the common promises of a batch, one after the other from calldata offset `at`,
    ///      until `end` or the first that is not common, and returns where it stopped and what it paid.
    ///      Common: the consumer it names signed it (low s), it is above the pair's figure, and the
    ///      vault's balance covers the increase. For these it does what `_settle` does (the vault's
    ///      balance, the pair's figure, `PromiseSettled`) with the opcodes it needs and no more:
    ///      docs/gas.md counts them. It changes nothing for the promise it stops at; `_settleUncommon` takes it.
    function _settleRun(address provider, uint256 pairs, uint256 at, uint256 end, bytes32 domain)
        private
        returns (uint256 stoppedAt, uint256 paid)
    {
        bytes32 typeHash = PROMISE_TYPEHASH;
        bytes32 settledTopic = PromiseSettled.selector;
        assembly ("memory-safe") {
            // Every hash, the ecrecover call and the event are written in the first four words of memory
            // (the scratch space, the free memory pointer, the zero slot), at fixed offsets, so the loop
            // expands no memory and computes no address; the pointer and the zero slot are put back after the
            // loop, on every way out of it, before any Solidity code runs again.
            let freeMemory := mload(0x40)
            for {} lt(at, end) { at := add(at, 0x60) } {
                let consumer := shr(96, calldataload(at))
                let amount := and(calldataload(at), 0xffffffffffffffffffffffff)
                // The EIP-712 digest of Promise(consumer, provider, amount), as `_hashTypedDataV4` makes it:
                // keccak256(typeHash ‖ consumer ‖ provider ‖ amount), then keccak256(0x1901 ‖ domain ‖ that),
                // left at 0x00 as ecrecover's first word.
                mstore(0x00, typeHash)
                mstore(0x20, consumer)
                mstore(0x40, provider)
                mstore(0x60, amount)
                mstore(0x40, keccak256(0x00, 0x80))
                mstore(0x00, 0x1901)
                mstore(0x20, domain)
                mstore(0x00, keccak256(0x1e, 0x42))
                // ecrecover(digest, v, r, s) of the compact signature. It is the consumer's when the precompile
                // answers (no key recovers: it returns nothing, and 0x00 still holds the digest) with the
                // consumer (a recovered key is never address 0, so a promise naming consumer 0 never passes);
                // a high s (the malleable twin, which ecrecover accepts) is left to `_settleUncommon`.
                {
                    let s := calldataload(add(at, 0x40)) // yParity‖s
                    mstore(0x20, add(shr(255, s), 27))
                    s := and(s, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                    mstore(0x40, calldataload(add(at, 0x20)))
                    mstore(0x60, s)
                    pop(staticcall(gas(), 0x01, 0x00, 0x80, 0x00, 0x20))
                    if iszero(and(and(eq(returndatasize(), 0x20), eq(mload(0x00), consumer)), iszero(gt(s, HALF_N)))) { break }
                }
                // The pair's figure and the vault's balance (its low 96 bits): the increase `owed` must be
                // at least 1 (a promise not above the figure pays nothing) and at most the balance (more is
                // an overdraft); both go to `_settleUncommon`. As one comparison: owed − 1 below the balance
                // (a promise below the figure wraps `owed` past 2^255, one equal to it wraps owed − 1).
                mstore(0x00, consumer)
                mstore(0x20, pairs)
                let pairSlot := keccak256(0x00, 0x40)
                let owed := sub(amount, sload(pairSlot))
                mstore(0x20, _vaults.slot)
                let vaultSlot := keccak256(0x00, 0x40)
                let word := sload(vaultSlot)
                if iszero(lt(sub(owed, 1), and(word, 0xffffffffffffffffffffffff))) { break }
                sstore(vaultSlot, sub(word, owed))
                sstore(pairSlot, amount)
                mstore(0x00, owed)
                mstore(0x20, amount)
                log3(0x00, 0x40, settledTopic, consumer, provider)
                paid := add(paid, owed)
            }
            mstore(0x40, freeMemory)
            mstore(0x60, 0)
            stoppedAt := at
        }
    }

    /// @dev Credits `paid` to `provider`'s earnings: the low 128 bits of its word (the relay nonce is the
    ///      high 128), read and written once; an overflow of the 128 bits reverts with Panic(0x11), as `+=` did.
    function _addEarnings(address provider, uint256 paid) private {
        assembly ("memory-safe") {
            mstore(0x00, provider)
            mstore(0x20, _earners.slot)
            let slot := keccak256(0x00, 0x40)
            let word := sload(slot)
            if shr(128, add(and(word, 0xffffffffffffffffffffffffffffffff), paid)) {
                mstore(0x00, 0x4e487b71) // Panic(uint256)
                mstore(0x20, 0x11)
                revert(0x1c, 0x24)
            }
            sstore(slot, add(word, paid))
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
        // keccak256 of the claims' struct hashes back to back (EIP-712's Claim[]), each
        // keccak256(abi.encode(CLAIM_TYPEHASH, consumer, amount)): hashed in the scratch space and laid
        // out past the free memory pointer, never allocated (a Solidity array of them cost a memory
        // allocation and its growth a claim).
        bytes32 claimTypeHash = CLAIM_TYPEHASH;
        bytes32 claimsHash;
        assembly ("memory-safe") {
            let list := mload(0x40)
            let next := list
            for {
                let at := promises.offset
                let end := add(at, promises.length)
            } lt(at, end) { at := add(at, 0x60) } {
                let head := calldataload(at)
                mstore(0x00, claimTypeHash)
                mstore(0x20, shr(96, head))
                mstore(0x40, and(head, 0xffffffffffffffffffffffff))
                mstore(next, keccak256(0x00, 0x60))
                next := add(next, 0x20)
            }
            claimsHash := keccak256(list, sub(next, list))
            mstore(0x40, list) // the free memory pointer, overwritten by the claims' hashing
        }
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(RELAYED_TYPEHASH, provider, relayer, claimsHash, maxFee, nonce)));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, providerSignature);
        if (err != ECDSA.RecoverError.NoError || signer != provider) revert RelaySignatureInvalid(provider, signer);
    }

    /// @dev The promise `_settleRun` stopped at, at calldata offset `at`, in plain Solidity: a bad
    ///      signature reverts the call; a promise not above the pair's figure pays nothing; otherwise the
    ///      vault's balance does not cover the increase, an overdraft. `strict`: revert rather than pay nothing.
    function _settleUncommon(address provider, uint256 at, bool strict) private returns (uint256 paid) {
        (address consumer, uint256 amount) = _checkedPromiseAt(provider, at);
        uint256 done = _settled[provider][consumer];
        if (amount <= done) {
            if (strict) revert PromiseNotAboveSettled(consumer, provider, amount, done);
            return 0;
        }
        paid = _overdraw(consumer, provider, amount - done, strict);
        if (paid == 0) return 0;
        uint256 total = done + paid;
        _settled[provider][consumer] = total;
        emit PromiseSettled(consumer, provider, paid, total);
    }

    /// @dev The consumer and amount of the packed promise at `at`, once OpenZeppelin's ECDSA found it
    ///      signed by that consumer for `provider` (EIP-712; a malformed or high-s signature recovers nobody).
    function _checkedPromiseAt(address provider, uint256 at) private view returns (address consumer, uint256 amount) {
        bytes32 r;
        bytes32 vs;
        (consumer, amount, r, vs) = _promiseAt(at);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(PROMISE_TYPEHASH, consumer, provider, amount)));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r, vs);
        if (err != ECDSA.RecoverError.NoError || signer != consumer) revert PromiseSignatureInvalid(consumer, signer);
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
