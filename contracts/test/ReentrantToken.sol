// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @dev Test-only hostile token: when armed, a transfer out of or into `victim` calls back into `victim`
///      with `payload` before moving the tokens, and records whether that re-entry succeeded.
contract ReentrantToken is ERC20 {
    address public victim;
    bytes public payload;
    bool public attempted;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address victim_, bytes calldata payload_) external {
        victim = victim_;
        payload = payload_;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (victim != address(0) && (from == victim || to == victim)) {
            address t = victim;
            victim = address(0);
            attempted = true;
            (bool ok, bytes memory ret) = t.call(payload);
            reentrySucceeded = ok;
            reentryError = ret;
        }
        super._update(from, to, value);
    }
}
