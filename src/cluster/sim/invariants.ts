// What the watchdog simulator checks after every step (issue 12, "the decision logic is
// pure and simulated"): at most one peer eligible to hold the VIP and at most one holding
// it at any instant (each holder with its claim committed first), each
// failover record executed by at most one peer at a time and never after it finished, each
// of its steps not safe to repeat completed at most once (across coordinators that crash or
// lose their lease between a step's begun and done),
// every record finished once the cluster heals, no backend failed over without a
// majority of views, and every peer's cluster state the same at the same log index.
import { SafetyViolation } from '../../raft/sim/invariants.js';

export { SafetyViolation };

interface Execution {
  peer: string;
  start: number;
  end: number;
  life: number;
}

export class WatchdogChecker {
  /** log index -> JSON of the cluster state after applying it (first peer to apply sets it) */
  private stateAt = new Map<number, string>();
  /** seq -> executions in progress */
  private running = new Map<number, Execution[]>();
  /** seq -> log index at which it finished (as first applied anywhere) */
  private finishedAt = new Map<number, number>();
  /** "peer:backend" -> last sim time that peer's own checks saw the backend down (Infinity while they do) */
  private lastDown = new Map<string, number>();
  /** "seq:step" -> peers that completed a step not safe to repeat */
  private completed = new Map<string, string[]>();
  executions = 0;
  failoversDeclared = 0;
  vipChecks = 0;

  onApply(peer: string, index: number, stateJson: string): void {
    const known = this.stateAt.get(index);
    if (known === undefined) this.stateAt.set(index, stateJson);
    else if (known !== stateJson) throw new SafetyViolation('cluster state safety', `${peer} has a different cluster state after entry ${index}`);
  }

  /** A record's FailoverFinished took effect at `index`. */
  onFinished(seq: number, index: number): void {
    const at = this.finishedAt.get(seq);
    if (at !== undefined && at !== index) throw new SafetyViolation('failover finished once', `failover ${seq} finished at entry ${at} and again at ${index}`);
    this.finishedAt.set(seq, index);
  }

  /** Eligibility of every live peer at this instant. */
  checkVip(eligible: string[]): void {
    this.vipChecks++;
    if (eligible.length > 1) throw new SafetyViolation('VIP safety', `${eligible.join(' and ')} are all eligible to hold the VIP`);
  }

  /**
   * The peers holding the VIP at this instant: never two, and each one holds it only with
   * its claim of its current term applied in its own state (the claim commits first).
   */
  checkHolders(holders: { peer: string; term: number; claim: { peer: string; term: number } | null }[]): void {
    if (holders.length > 1) throw new SafetyViolation('VIP safety', `${holders.map((h) => h.peer).join(' and ')} hold the VIP at once`);
    for (const h of holders) {
      if (h.claim?.peer !== h.peer || h.claim.term !== h.term) {
        throw new SafetyViolation('VIP claim', `${h.peer} holds the VIP in term ${h.term}, but its state names ${h.claim ? `${h.claim.peer} (term ${h.claim.term})` : 'nobody'}`);
      }
    }
  }

  execStart(seq: number, peer: string, life: number, now: number, end: number): void {
    if (this.finishedAt.has(seq)) throw new SafetyViolation('failover executed once', `${peer} runs a step of failover ${seq}, which finished at entry ${this.finishedAt.get(seq)}`);
    const list = (this.running.get(seq) ?? []).filter((e) => e.end > now);
    const other = list[0];
    if (other) throw new SafetyViolation('failover executed once', `${peer} runs a step of failover ${seq} while ${other.peer} still runs one (until t=${other.end})`);
    list.push({ peer, start: now, end, life });
    this.running.set(seq, list);
    this.executions++;
  }

  /** A step's effect happened (its command completed). One not safe to repeat must complete at most once per record. */
  onEffect(seq: number, step: string, repeatable: boolean, peer: string): void {
    if (repeatable) return;
    const key = `${seq}:${step}`;
    const by = this.completed.get(key) ?? [];
    by.push(peer);
    this.completed.set(key, by);
    if (by.length > 1) throw new SafetyViolation('step completed once', `${step} of failover ${seq}, not safe to repeat, completed ${by.length} times (${by.join(', ')})`);
  }

  /** A peer crashed: its commands die with it. */
  onCrash(peer: string, now: number): void {
    for (const list of this.running.values()) for (const e of list) if (e.peer === peer && e.end > now) e.end = now;
  }

  setLocalHealth(peer: string, backend: number, down: boolean, now: number): void {
    this.lastDown.set(`${peer}:${backend}`, down ? Infinity : now);
  }

  /** A coordinator asks to fail `ids` over at `now`: a majority of peers must have seen each down within `windowUnits`. */
  onDeclareDown(peer: string, ids: number[], peers: readonly string[], now: number, windowUnits: number): void {
    this.failoversDeclared++;
    const need = Math.floor(peers.length / 2) + 1;
    for (const b of ids) {
      const saw = peers.filter((p) => (this.lastDown.get(`${p}:${b}`) ?? -Infinity) >= now - windowUnits);
      if (saw.length < need) {
        throw new SafetyViolation('failover consensus', `${peer} fails backend ${b} over, but only ${saw.length} of ${peers.length} peers (${saw.join(', ') || 'none'}) saw it down recently; ${need} needed`);
      }
    }
  }

  /** After healing: every record the state knows has finished. */
  checkAllFinished(open: number[]): void {
    if (open.length) throw new SafetyViolation('failover finished once', `failover ${open.join(', ')} never finished after the cluster healed`);
  }
}
