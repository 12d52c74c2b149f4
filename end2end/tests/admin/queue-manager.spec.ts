import { expect, test, type Page } from '@playwright/test';
import { logIn, users } from '../helpers';

const kafka = `127.0.0.1:${process.env.E2E_KAFKA_PORT ?? 19192}`;
const sqsEndpoint = `http://127.0.0.1:${process.env.E2E_MOTO_PORT ?? 19193}`;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;

async function openQueueManager(page: Page) {
  await page.getByRole('button', { name: 'Admin' }).click();
  await page.getByRole('menuitem', { name: 'Queue manager' }).click();
  await expect(page.getByRole('heading', { name: 'Queue manager' })).toBeVisible();
}

async function connectQueue(page: Page, name: string, servers: string) {
  await page.getByRole('link', { name: 'Connect queue' }).click();
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Bootstrap servers').fill(servers);
  await page.getByRole('button', { name: 'Connect to Broker' }).click();
}

test('an admin connects a queue, opens a topic and gives two algorithms access', async ({ page }) => {
  const name = unique('tansu');
  const topic = unique('orders');
  await logIn(page, users.admin);
  await openQueueManager(page);

  await connectQueue(page, name, kafka);
  await expect(page).toHaveURL(/\/admin\/queues$/);
  const row = page.getByRole('row').filter({ hasText: name });
  await expect(row).toContainText('Kafka');
  await expect(row).toContainText(kafka);
  await expect(row).toContainText('Reachable');

  await row.getByRole('link', { name }).click();
  await expect(page.getByRole('heading', { name, level: 1 })).toBeVisible();
  await expect(page.getByText('A broker connection cannot be edited.')).toBeVisible();

  await page.getByRole('button', { name: 'Create topic' }).click();
  await page.getByLabel('Topic name').fill(topic);
  await page.getByLabel('Partitions').fill('3');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(page.getByRole('status')).toHaveText(`Topic '${topic}' created.`);
  const topicRow = page.getByRole('row').filter({ hasText: topic });
  await expect(topicRow.getByRole('cell').nth(1)).toHaveText('3');

  await topicRow.getByRole('link', { name: topic }).click();
  const sheet = page.getByRole('region', { name: `Topic ${topic}` });
  await expect(sheet).toBeVisible();
  await expect(page).toHaveURL(new RegExp(`\\?topic=${topic}$`));
  await expect(sheet.getByText('No algorithm has access to this topic yet.')).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(sheet).toBeHidden();

  await topicRow.getByRole('link', { name: topic }).click();
  await sheet.getByRole('link', { name: 'Edit' }).click();
  await expect(page.getByRole('heading', { name: `Edit topic ${topic}` })).toBeVisible();
  await page.getByLabel('Search algorithms').fill('sentiment');
  await page.getByRole('button', { name: 'Add acme/sentiment' }).click();
  await page.getByLabel('Search algorithms').fill('acme/echo');
  await page.getByRole('button', { name: 'Add acme/echo' }).click();
  await page.getByRole('checkbox', { name: 'Subscribe: acme/echo' }).uncheck();
  await page.getByRole('checkbox', { name: 'Publish: acme/echo' }).check();
  await page.getByRole('button', { name: 'Save changes' }).click();

  await expect(page.getByRole('heading', { name, level: 1 })).toBeVisible();
  await expect(page).not.toHaveURL(/edit/);
  await page.getByRole('row').filter({ hasText: topic }).getByRole('link', { name: topic }).click();
  const access = page.getByRole('region', { name: `Topic ${topic}` }).getByRole('list', { name: 'Algorithms with access' });
  await expect(access.getByRole('listitem').filter({ hasText: 'acme/sentiment' })).toContainText('Subscribe');
  await expect(access.getByRole('listitem').filter({ hasText: 'acme/echo' })).toContainText('Publish');
  await expect(access.getByRole('listitem').filter({ hasText: 'acme/echo' })).not.toContainText('Subscribe');
});

test('leaving the topic edit page without saving changes nothing', async ({ page }) => {
  const name = unique('tansu');
  const topic = unique('untouched');
  await logIn(page, users.admin);
  await openQueueManager(page);
  await connectQueue(page, name, kafka);
  await page.getByRole('row').filter({ hasText: name }).getByRole('link', { name }).click();
  await page.getByRole('button', { name: 'Create topic' }).click();
  await page.getByLabel('Topic name').fill(topic);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('row').filter({ hasText: topic }).getByRole('link', { name: topic }).click();
  await page.getByRole('region', { name: `Topic ${topic}` }).getByRole('link', { name: 'Edit' }).click();
  await page.getByRole('button', { name: 'Add acme/echo' }).click();
  await page.getByRole('link', { name: 'Cancel' }).click();
  await page.getByRole('row').filter({ hasText: topic }).getByRole('link', { name: topic }).click();
  await expect(page.getByRole('region', { name: `Topic ${topic}` }).getByText('No algorithm has access to this topic yet.')).toBeVisible();
});

test('a broker that does not answer keeps the form filled and shows why', async ({ page }) => {
  const name = unique('nowhere');
  await logIn(page, users.admin);
  await page.goto('/admin/queues/new');
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Bootstrap servers').fill('127.0.0.1:1');
  await page.getByRole('button', { name: 'Connect to Broker' }).click();
  await expect(page.getByRole('alert')).toContainText('127.0.0.1:1');
  await expect(page.getByLabel('Name', { exact: true })).toHaveValue(name);
  await expect(page.getByLabel('Bootstrap servers')).toHaveValue('127.0.0.1:1');

  await page.getByLabel('Bootstrap servers').fill('not a server');
  await page.getByRole('button', { name: 'Connect to Broker' }).click();
  await expect(page.getByText("'not a server' is not host:port")).toBeVisible();

  await page.goto('/admin/queues');
  await expect(page.getByRole('row').filter({ hasText: name })).toHaveCount(0);
});

test('SASL fields appear only for SASL protocols, the CA certificate only for SSL', async ({ page }) => {
  await logIn(page, users.admin);
  await page.goto('/admin/queues/new');
  await expect(page.getByLabel('SASL mechanism')).toHaveCount(0);
  await expect(page.getByLabel('CA certificate (PEM)')).toHaveCount(0);
  await page.getByLabel('Security protocol').selectOption('SASL_SSL');
  await expect(page.getByLabel('SASL mechanism')).toBeVisible();
  await expect(page.getByLabel('Password')).toBeVisible();
  await expect(page.getByLabel('CA certificate (PEM)')).toBeVisible();
  await page.getByLabel('Security protocol').selectOption('SSL');
  await expect(page.getByLabel('SASL mechanism')).toHaveCount(0);
  await expect(page.getByLabel('CA certificate (PEM)')).toBeVisible();
});

test('an admin deletes a connection through the confirmation dialog', async ({ page }) => {
  const name = unique('doomed');
  await logIn(page, users.admin);
  await openQueueManager(page);
  await connectQueue(page, name, kafka);
  await page.getByRole('row').filter({ hasText: name }).getByRole('link', { name }).click();
  await page.getByRole('button', { name: 'Delete' }).click();
  const dialog = page.getByRole('dialog', { name: 'Delete broker connection?' });
  await expect(dialog).toContainText(name);
  await expect(dialog).toContainText('No flows use this connection.');
  // Focus starts inside; Esc closes it.
  await expect(dialog.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(dialog.getByRole('button', { name: 'Delete' })).toBeFocused();
  await page.keyboard.press('Escape');
  await expect(dialog).toBeHidden();
  // Focus goes back to the button that opened it.
  await expect(page.getByRole('button', { name: 'Delete' })).toBeFocused();

  await page.getByRole('button', { name: 'Delete' }).click();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toBeHidden();

  await page.getByRole('button', { name: 'Delete' }).click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  await expect(page).toHaveURL(/\/admin\/queues$/);
  await expect(page.getByRole('heading', { name: 'Queue manager' })).toBeVisible();
  await expect(page.getByRole('row').filter({ hasText: name })).toHaveCount(0);
});

test('a member is refused on every Queue manager page and server function', async ({ page }) => {
  await logIn(page, users.ana);
  for (const path of ['/admin/queues', '/admin/queues/new', '/admin/queues/some-id']) {
    await page.goto(path);
    await expect(page.getByRole('heading', { name: 'Not allowed' })).toBeVisible();
  }
  const reply = await page.request.post('/api/list_broker_connections', { data: {} });
  expect(reply.status()).toBe(403);
});

test('an admin connects Amazon SQS, creates a queue and opens it', async ({ page }) => {
  const name = unique('sqs');
  const queue = unique('orders');
  await logIn(page, users.admin);
  await openQueueManager(page);
  await page.getByRole('link', { name: 'Connect queue' }).click();
  await page.getByLabel('Type').selectOption({ label: 'Amazon SQS' });
  await expect(page.getByLabel('Bootstrap servers')).toBeHidden();
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Endpoint URL (optional)').fill(sqsEndpoint);
  await page.getByLabel('Access key ID').fill('AKIAEVENTFLOWSE2E');
  await page.getByLabel('Secret access key').fill('e2e-secret-key');

  // The region is missing: the form says so at the field, and keeps what was typed.
  await page.getByRole('button', { name: 'Connect to Broker' }).click();
  const region = page.getByLabel('Region');
  await expect(region).toHaveAttribute('aria-invalid', 'true');
  await expect(region).toHaveAccessibleDescription('Enter an AWS region, for example us-east-1.');
  await expect(page.getByLabel('Access key ID')).toHaveValue('AKIAEVENTFLOWSE2E');

  await region.fill('us-east-1');
  await page.getByRole('button', { name: 'Connect to Broker' }).click();
  await expect(page).toHaveURL(/\/admin\/queues$/);
  const row = page.getByRole('row').filter({ hasText: name });
  await expect(row).toContainText('Amazon SQS');
  await expect(row).toContainText(`us-east-1 at ${sqsEndpoint}`);
  await expect(row).toContainText('Reachable');

  await row.getByRole('link', { name }).click();
  const settings = page.getByRole('region', { name: 'Settings' });
  await expect(settings).toContainText('Amazon SQS');
  await expect(settings).toContainText('AKIAEVENTFLOWSE2E');
  await expect(settings).not.toContainText('e2e-secret-key');

  await page.getByRole('button', { name: 'Create topic' }).click();
  await expect(page.getByLabel('Partitions')).toBeHidden();
  await page.getByLabel('Queue name').fill(queue);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await expect(page.getByRole('status')).toHaveText(`Queue '${queue}' created.`);
  const queueRow = page.getByRole('row').filter({ hasText: queue });
  await expect(queueRow.getByRole('cell').nth(1)).toHaveText('Standard');

  await queueRow.getByRole('link', { name: queue }).click();
  const sheet = page.getByRole('region', { name: `Topic ${queue}` });
  await expect(sheet).toContainText('Standard queue');
  await expect(sheet).toContainText('Visible messages');
});
