// The whole flow of the product, in the browser, without JavaScript and hydrated: a team
// member adds a local credential and requests a dedicated pool (the estimate follows what is
// typed once hydrated), an admin approves it in another browser, the machines start on the
// status page, and a build with the team's tag gets one of them over XML-RPC; a build
// without it does not.
import { request as httpRequest } from 'node:http';
import { test, expect } from '@playwright/test';
import { newPage, signIn } from '../dev-browser';
import { FLOW, FLOW_XMLRPC_PORT } from '../playwright.config';

test.use({ baseURL: FLOW });

function call(method: string, params: string): Promise<string> {
  const body = `<?xml version='1.0'?>\n<methodCall><methodName>${method}</methodName><params>${params}</params></methodCall>`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `http://127.0.0.1:${FLOW_XMLRPC_PORT}/RPC2`,
      { method: 'POST', headers: { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const tags = (list: string[]) =>
  `<param><value><array><data>${list.map((t) => `<value><string>${t}</string></value>`).join('')}</data></array></value></param>`;
const id = (xml: string) => Number(/<(?:int|i4)>(\d+)<\/(?:int|i4)>/.exec(xml)?.[1]);



for (const javaScriptEnabled of [false, true]) {
  const team = javaScriptEnabled ? 'pool-hydrated' : 'pool-plain';
  const name = javaScriptEnabled ? 'e2e-hydrated' : 'e2e-plain';
  test(`a member requests a dedicated pool, an admin approves it, builds get it (${javaScriptEnabled ? 'hydrated' : 'without JavaScript'})`, async ({ browser }) => {
    const member = await newPage(browser, javaScriptEnabled, FLOW);
    await signIn(member, 'dana', team);
    await member.goto(`/teams/${team}`);
    await expect(member.getByTestId('team-no-pools')).toBeVisible();

    // A local credential (no cloud), then the request form on it.
    await member.getByTestId('add-credential').click();
    await member.getByRole('link', { name: 'Local demo', exact: true }).click();
    await member.getByLabel('Name', { exact: true }).fill('demo');
    await member.getByRole('button', { name: 'Add credential' }).click();
    await expect(member.getByTestId('notice')).toContainText('Added the Local demo credential demo.');
    await member.goto(`/teams/${team}`);
    await member.getByTestId('request-pool').click();
    await member.getByRole('link', { name: 'demo' }).click();

    const form = member.getByTestId('request-form');
    await form.getByLabel('Name', { exact: true }).fill(name);
    await form.getByRole('radio', { name: /^Dedicated/ }).check();
    await form.getByRole('radio', { name: /^Preallocated/ }).check();
    await form.getByLabel('Machines kept ready (preallocated)').fill('1');
    await form.getByLabel('Most machines at once').fill('2');
    await form.getByLabel('Price per machine-hour (USD)').fill('0.1');
    await form.getByLabel('Monthly cap (optional, USD)').fill('50');
    await form.getByLabel('Expected build hours a month').fill('0');
    if (javaScriptEnabled) {
      // The estimate follows the form: 1 × 730 h × $0.10 = $73.00, over the $50 cap.
      await expect(member.getByTestId('estimate')).toContainText('$73.00');
      await expect(member.getByTestId('estimate-verdict')).toHaveText('exceeds the $50.00 cap by $23.00');
      await form.getByLabel('Monthly cap (optional, USD)').fill('100');
      await expect(member.getByTestId('estimate-verdict')).toHaveText('fits the $100.00 cap');
    } else {
      await member.getByRole('button', { name: 'Preview the cost' }).click();
      await expect(member.getByTestId('preview')).toBeVisible();
      await expect(member.getByTestId('estimate-verdict')).toHaveText('exceeds the $50.00 cap by $23.00');
      await expect(form.getByLabel('Name', { exact: true })).toHaveValue(name);
      await form.getByLabel('Monthly cap (optional, USD)').fill('100');
    }
    await form.getByLabel('Justification').fill('End-to-end builders for the demo.');
    await member.getByRole('button', { name: 'Submit the request' }).click();
    await expect(member).toHaveURL(/\/requests\/\d+$/);
    await expect(member.getByTestId('request-state')).toHaveText('submitted');
    await expect(member.getByTestId('timeline')).toContainText('submitted by dana');
    const requestUrl = member.url();

    // The admin, in another browser, approves it from the queue.
    const admin = await newPage(browser, javaScriptEnabled, FLOW);
    await signIn(admin, 'carol', 'copr-admins');
    await admin.goto('/admin');
    await admin.getByTestId('queue-link').click();
    await admin.getByRole('link', { name: new RegExp(`${name} \\(${team}\\)`) }).click();
    await expect(admin).toHaveURL(requestUrl);
    await admin.getByRole('button', { name: 'Approve and create the pools' }).click();
    await expect(admin.getByTestId('notice')).toContainText(`Approved: ${name}-x86_64 created`);
    await expect(admin.getByTestId('request-state')).toHaveText('approved');

    // Its machine starts: the status page shows it ready (after a reload without JavaScript).
    const pool = `${name}-x86_64`;
    const row = member.getByTestId('pool-table').locator('tr', { hasText: pool });
    await member.goto('/');
    if (javaScriptEnabled) {
      await expect(row.locator('td[data-label="Ready"]')).toHaveText('1', { timeout: 30_000 });
    } else {
      await expect(async () => {
        await member.reload();
        await expect(row.locator('td[data-label="Ready"]')).toHaveText('1', { timeout: 1_000 });
      }).toPass({ timeout: 30_000 });
    }

    // Someone else's build (taken first, so it would have the only ready machine if tags
    // alone decided; no shared x86_64 pool exists in this run) waits; the team's build gets
    // the team's machine.
    const other = id(await call('takeTicket', tags(['copr_builder', 'arch_x86_64'])));
    const mine = id(await call('takeTicket', tags(['copr_builder', 'arch_x86_64', `team_${team}`])));
    expect(await call('waitTicket', `<param><value><int>${mine}</int></value></param>`)).toContain('<base64>MTI3LjAuMC4xCg==</base64>');
    expect(await call('collectTicket', `<param><value><int>${other}</int></value></param>`)).toMatch(
      /<name>ready<\/name><value><boolean>0<\/boolean><\/value>/,
    );
    await call('closeTicket', `<param><value><int>${mine}</int></value></param>`);
    await call('closeTicket', `<param><value><int>${other}</int></value></param>`);

    // The team page shows the pool, its month, and the request.
    await member.goto(`/teams/${team}`);
    await expect(member.getByTestId('pool-list')).toContainText(pool);
    await expect(member.getByTestId('request-table')).toContainText('approved');
  });
}
