// resalloc's XML-RPC API called the way resalloc's Python client (and Copr's backend) calls
// it: Content-Type text/xml, no Origin.
import { request as httpRequest } from 'node:http';
import { APP_XMLRPC_PORT } from './playwright.config';

export const RPC = `http://127.0.0.1:${APP_XMLRPC_PORT}/RPC2`;

/** One method call; resolves with the response body, rejects on a status other than 200. */
export function call(method: string, params: string): Promise<string> {
  const body = `<?xml version='1.0'?>\n<methodCall><methodName>${method}</methodName><params>${params}</params></methodCall>`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      RPC,
      { method: 'POST', headers: { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`${res.statusCode} ${text}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export const intParam = (id: number) => `<param><value><int>${id}</int></value></param>`;
const stringValue = (s: string) => `<value><string>${s}</string></value>`;

/** takeTicket(tags[, sandbox]); resolves with the ticket id. */
export async function takeTicket(tags: string[], sandbox?: string): Promise<number> {
  const params =
    `<param><value><array><data>${tags.map(stringValue).join('')}</data></array></value></param>` +
    (sandbox ? `<param>${stringValue(sandbox)}</param>` : '');
  const taken = await call('takeTicket', params);
  return Number(/<(?:int|i4)>(\d+)<\/(?:int|i4)>/.exec(taken)?.[1]);
}
