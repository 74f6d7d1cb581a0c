/** The error a promise rejects with; fails the test when it resolves instead. */
export async function rejectionOf(promise: Promise<unknown>): Promise<{ code?: string; message: string; peerCode?: string; refusal?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code?: string; message: string; peerCode?: string; refusal?: string };
  }
  throw new Error("expected a rejection, but it resolved");
}
