// Child process of channel.test.ts: listens on a unix socket, opens N connections to an echo
// server, and sends them all in one `sessions` message when asked.
import net from 'node:net';
import { once } from 'node:events';
import { SocketChannel, expect } from '../../src/takeover/channel.js';

const [path, port, count] = process.argv.slice(2) as [string, string, string];
const conns: net.Socket[] = [];
for (let i = 0; i < Number(count); i++) {
  const s = net.connect(Number(port), '127.0.0.1');
  await once(s, 'connect');
  conns.push(s);
}
const server = net.createServer(async (sock) => {
  const ch = new SocketChannel(sock, 'new process', true);
  await expect(ch, 'send-listeners', 10_000);
  const fds = conns.map((c) => (c as unknown as { _handle: { fd: number } })._handle.fd);
  ch.send({ type: 'sessions', sessions: [] }, fds);
  // Closing our copies must not close the connections the other process now holds.
  for (const c of conns) c.destroy();
  ch.send({ type: 'done', moved: fds.length, ended: 0, pooled: 0, reason: 'sent' });
  sock.on('close', () => {
    server.close();
    process.exit(0);
  });
});
server.listen(path);
