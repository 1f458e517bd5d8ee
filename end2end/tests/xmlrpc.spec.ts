// resalloc's XML-RPC API has no authentication, like resalloc's own: it must not be usable by
// a web page. Chromium itself posts to it here, as any page a developer has open could.
import { test, expect } from '@playwright/test';
import { RPC, call, intParam, takeTicket } from '../rpc';

test('a web page cannot close tickets through the XML-RPC API', async ({ page }) => {
  const id = await takeTicket(['copr_builder']);
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
