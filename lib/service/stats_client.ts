// `dsm stats`: connects to a node as a client (authenticated like a peer, but never a
// member) and asks for its figures.
import { decode, encode, Msg, NO_NODE } from './protocol';
import { Transport } from './transport';

export async function fetchStats(address: string, secret: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const t = new Transport({ listen: '127.0.0.1:0', secret });
  try {
    const c = await t.connect(address);
    const reply = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from ${address} within ${timeoutMs} ms`)), timeoutMs);
      c.on('message', (type: number, payload: Buffer) => {
        if (type === Msg.StatsReply) {
          clearTimeout(timer);
          resolve(payload);
        }
      });
      c.on('close', (reason: string) => {
        clearTimeout(timer);
        reject(new Error(`${address} closed the connection (${reason})`));
      });
    });
    c.send(Msg.Hello, encode.hello({ id: NO_NODE, address: '', joining: false, client: true }));
    c.send(Msg.StatsRequest, Buffer.alloc(0));
    return decode.json(await reply) as Record<string, unknown>;
  } finally {
    await t.close();
  }
}
