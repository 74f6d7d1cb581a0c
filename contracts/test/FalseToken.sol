// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @dev Test-only hostile token: once `lie` is set, transfers move nothing and return false.
contract FalseToken is ERC20 {
    bool public lie;

    constructor() ERC20("False", "FALSE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setLie(bool lie_) external {
        lie = lie_;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (lie) return false;
        return super.transfer(to, value);
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (lie) return false;
        return super.transferFrom(from, to, value);
    }
}
