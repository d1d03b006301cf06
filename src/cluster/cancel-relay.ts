// Cancel routing across peers: a client's CancelRequest can reach a peer that does not own
// the session (a TCP load balancer in front of the peers, or a peer's address cached across
// a VIP move). The proxy puts the owning peer's index (its place in watchdog.peers) in the
// BackendKeyData secret it hands out (proxy/index.ts, cancelKey), so the peer that receives
// the cancel knows where to send it: over the watchdog connection, as a `cancel` envelope,
// to the owner, which cancels as if the client had asked it. Best effort, like PostgreSQL's
// own cancel: a lost link drops it, and the log says so.
import type { Logger } from '../log.js';
import { WIRE_VERSION, type Envelope } from './wire.js';
import type { PeerTransport } from './transport.js';

export class CancelRelay {
  constructor(
    private readonly transport: PeerTransport,
    /** watchdog.peers' names, in config order: index i is the peer whose cancel keys carry i. */
    private readonly peers: readonly string[],
    private readonly cancelHere: (pid: number, secret: number) => void,
    private readonly log: Logger,
  ) {
    transport.on('message', this.onMessage);
  }

  /** Sends a cancel to the peer with this index; false (logged) when it cannot. */
  forward(peer: number, pid: number, secret: number): boolean {
    const to = this.peers[peer];
    if (to === undefined || to === this.transport.self) {
      this.log.info({ peer, pid }, 'cancel request names no other peer; ignored');
      return false;
    }
    const ok = this.transport.send(to, { v: WIRE_VERSION, kind: 'cancel', from: this.transport.self, body: { pid, secret } });
    this.log.info({ to, pid, sent: ok }, ok ? 'cancel request forwarded to the peer that owns the session' : 'cancel request for another peer dropped: no link to it');
    return ok;
  }

  private readonly onMessage = (env: Envelope): void => {
    if (env.kind !== 'cancel') return;
    this.log.info({ from: env.from, pid: env.body.pid }, 'cancel request forwarded by a peer');
    this.cancelHere(env.body.pid, env.body.secret);
  };

  close(): void {
    this.transport.off('message', this.onMessage);
  }
}
