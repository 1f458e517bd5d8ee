// resalloc's XML-RPC API has no authentication, like resalloc's own: it must not be usable by
// a web page. Chromium itself posts to it here, as any page a developer has open could.
import { request as httpRequest } from 'node:http';
import { test, expect } from '@playwright/test';
import { APP_XMLRPC_PORT } from '../playwright.config';

const RPC = `http://127.0.0.1:${APP_XMLRPC_PORT}/RPC2`;

/** A call the way resalloc's Python client makes it (Content-Type: text/xml, no Origin). */
function call(method: string, params: string): Promise<string> {
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

const intParam = (id: number) => `<param><value><int>${id}</int></value></param>`;

test('a web page cannot close tickets through the XML-RPC API', async ({ page }) => {
  const taken = await call(
    'takeTicket',
    '<param><value><array><data><value><string>copr_builder</string></value></data></array></value></param>',
  );
  const id = Number(/<(?:int|i4)>(\d+)<\/(?:int|i4)>/.exec(taken)?.[1]);
  expect(id).toBeGreaterThan(0);
  const close = `<?xml version="1.0"?><methodCall><methodName>closeTicket</methodName><params>${intParam(id)}</params></methodCall>`;

  // A script on an open page: fetch without CORS (text/plain, Origin, Sec-Fetch-Site).
  await page.goto('/');
  const refused = page.waitForResponse((r) => r.url() === RPC);
  await page.evaluate(
    async ({ url, body }) => {
      await fetch(url, { method: 'POST', mode: 'no-cors', body });
    },
    { url: RPC, body: close },
  );
  expect((await refused).status()).toBe(403);

  // A form that posts the same XML as text/plain and navigates to the answer.
  await page.setContent(
    `<form method="post" action="${RPC}" enctype="text/plain">` +
      `<input type="hidden" name='<?xml version' value='"1.0"?><methodCall><methodName>closeTicket</methodName><params>${intParam(id)}</params></methodCall>'>` +
      `<button>send</button></form>`,
  );
  const [answer] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'send' }).click()]);
  expect(answer?.status()).toBe(403);
  await expect(page.locator('body')).toContainText('Refused: requests from web pages are refused');

  // The ticket is still open; Copr's own client closes it.
  const collected = await call('collectTicket', intParam(id));
  expect(collected).toMatch(/<name>closed<\/name><value><boolean>0<\/boolean><\/value>/);
  await call('closeTicket', intParam(id));
  expect(await call('collectTicket', intParam(id))).toMatch(/<name>closed<\/name><value><boolean>1<\/boolean><\/value>/);
});
