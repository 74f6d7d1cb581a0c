// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC1363} from "@openzeppelin/contracts/token/ERC20/extensions/ERC1363.sol";

/// @title MystToken
/// @notice The MYST token that consumers deposit into payment channels and providers earn.
/// @dev ERC20 (18 decimals) with ERC-2612 permit and ERC-1363 `transferAndCall`, so a deposit into the
///      vault is one transfer that notifies it (no approval, no permit).
///      The whole supply is minted once to `holder` at deployment; there is no owner and no mint.
contract MystToken is ERC20, ERC20Permit, ERC1363 {
    /// @param holder receives the initial supply
    /// @param initialSupply amount minted to `holder`, in wei (18 decimals)
    constructor(address holder, uint256 initialSupply) ERC20("Myst", "MYST") ERC20Permit("Myst") {
        _mint(holder, initialSupply);
    }
}
