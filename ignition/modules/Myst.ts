import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";

/**
 * Deploys the whole on-chain system, wired together: the MYST token (whole supply to `holder`,
 * the deployer by default), the identity registry, and the consumer vault that uses both.
 */
export default buildModule("Myst", (m) => {
  const holder = m.getParameter("holder", m.getAccount(0));
  const initialSupply = m.getParameter("initialSupply", 1_000_000_000n * 10n ** 18n);
  const challengePeriod = m.getParameter("challengePeriod", 24n * 3600n);

  const token = m.contract("MystToken", [holder, initialSupply]);
  const registry = m.contract("IdentityRegistry");
  const vault = m.contract("ConsumerVault", [token, registry, challengePeriod]);

  return { token, registry, vault };
});
