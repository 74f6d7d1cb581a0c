/** Whether another process with this pid is alive (a record's owner that may have died). */
export function otherProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return pid !== process.pid;
  } catch {
    return false;
  }
}
