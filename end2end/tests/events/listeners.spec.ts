import { expect, request as playwrightRequest, test, type APIRequestContext } from '@playwright/test';
import { logIn, users } from '../helpers';

const kafka = `127.0.0.1:${process.env.E2E_KAFKA_PORT ?? 19192}`;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;

async function call(api: APIRequestContext, fn: string, data: object) {
  const reply = await api.post(`/api/${fn}`, { data });
  expect(reply.status(), `${fn}: ${await reply.text()}`).toBe(200);
  return reply.json();
}

/** An admin's API session, and a new connection to the test broker. */
async function connectAsAdmin(baseURL: string, prefix: string) {
  const admin = await playwrightRequest.newContext({ baseURL });
  await call(admin, 'login', { username: users.admin.name, password: users.admin.password });
  const id: string = await call(admin, 'connect_broker', {
    connection: {
      name: unique(prefix), bootstrap_servers: kafka, security_protocol: 'PLAINTEXT',
      sasl_mechanism: '', username: '', password: '', ca_pem: '',
    },
  });
  return { admin, id };
}

/** As admin, through the API: a connection, three topics and the grants. */
async function setUp(baseURL: string) {
  const { admin, id } = await connectAsAdmin(baseURL, 'events');
  const topics = { input: unique('reviews'), output: unique('scores'), dlq: unique('reviews-dlq') };
  for (const [topic, partitions] of [[topics.input, 3], [topics.output, 1], [topics.dlq, 1]] as const) {
    await call(admin, 'create_topic', { id, topic, partitions });
  }
  const grant = (algorithm: string, subscribe: boolean, publish: boolean) => ({ algorithm, access: { subscribe, publish } });
  await call(admin, 'save_topic_grants', {
    id, topic: topics.input, grants: [grant('acme/sentiment', true, false), grant('acme/echo', false, true)],
  });
  await call(admin, 'save_topic_grants', { id, topic: topics.output, grants: [grant('acme/sentiment', false, true)] });
  await call(admin, 'save_topic_grants', { id, topic: topics.dlq, grants: [grant('acme/sentiment', false, true)] });
  await admin.dispose();
  return { id, ...topics };
}

test('a member enables a listener with a Dead Letter Queue, watches it work, edits and disables it', async ({ page, baseURL }) => {
  const t = await setUp(baseURL!);
  await logIn(page, users.ana);

  await page.getByRole('link', { name: 'ML service catalog' }).click();
  await page.getByLabel('Search algorithms').fill('sentiment');
  await page.getByRole('link', { name: 'acme/sentiment' }).click();
  const pages = page.getByRole('navigation', { name: 'Algorithm' });
  await pages.getByRole('link', { name: 'Events' }).click();
  await expect(pages.getByRole('link', { name: 'Events' })).toHaveAttribute('aria-current', 'page');
  await expect(pages.getByRole('link', { name: 'Overview' })).not.toHaveAttribute('aria-current', 'page');

  const inputRow = page.getByRole('row').filter({ hasText: t.input }).filter({ hasText: 'Subscribe' });
  await expect(inputRow).toContainText('Disabled');
  await inputRow.getByRole('button', { name: `Enable Subscribe on ${t.input}` }).click();
  let dialog = page.getByRole('dialog', { name: 'Enable listener' });
  await expect(dialog.getByLabel('Version').locator('option').first()).toHaveText('1.1.0');
  await dialog.getByLabel('Version').selectOption('1.0.0');
  await expect(dialog.getByLabel('Dead Letter Queue topic')).toHaveCount(0);
  await dialog.getByLabel('Enable Dead Letter Queue').check();
  const dlqOptions = dialog.getByLabel('Dead Letter Queue topic').locator('option');
  await expect(dlqOptions).toHaveText([t.dlq, t.output]);
  await dialog.getByLabel('Dead Letter Queue topic').selectOption(t.dlq);
  await dialog.getByRole('button', { name: 'Enable Listener' }).click();
  await expect(page.getByRole('status')).toHaveText(`Listener on ${t.input} enabled.`);
  await expect(inputRow).toContainText('Enabled');
  await expect(inputRow).toContainText('1.0.0');
  await expect(inputRow).toContainText(t.dlq);

  const outputRow = page.getByRole('row').filter({ hasText: t.output }).filter({ hasText: 'Publish' });
  await outputRow.getByRole('button', { name: `Enable Publish on ${t.output}` }).click();
  dialog = page.getByRole('dialog', { name: 'Enable listener' });
  await expect(dialog.getByLabel('Enable Dead Letter Queue')).toHaveCount(0);
  await expect(dialog.getByLabel('Version')).toHaveValue('listener');
  await dialog.getByLabel('Version').selectOption('1.0.0');
  await dialog.getByRole('button', { name: 'Enable Listener' }).click();
  await expect(outputRow).toContainText('Enabled');

  // Messages reach the topic through acme/echo's publish flow on it.
  await call(page.request, 'save_flow', {
    request: { org: 'acme', name: 'echo', connection_id: t.id, topic: t.input, direction: 'Publish', version: '1.0.0', dlq_topic: null },
  });
  for (const body of [{ text: 'I love it' }, { text: 'awful' }, { text: 'great' }, { no_text: true }]) {
    const reply = await page.request.post('/v1/algo/acme/echo/1.0.0', { data: body });
    expect(reply.status()).toBe(200);
  }

  await inputRow.getByRole('button', { name: `Monitor Subscribe on ${t.input}` }).click();
  const monitor = page.getByRole('region', { name: `Flow Subscribe on ${t.input}` });
  await expect(monitor.getByTestId('stat-succeeded')).toHaveText('3', { timeout: 30_000 });
  await expect(monitor.getByTestId('stat-dead-lettered')).toHaveText('1');
  await expect(monitor.getByTestId('stat-consumed')).toHaveText('4');
  await expect(monitor.getByTestId('flow-state')).toHaveText('running');
  await expect(monitor.getByTestId('flow-group')).toHaveText(/^eventflows\.[0-9a-f]+\.[0-9a-f]+\./);
  await expect(monitor.getByTestId('flow-partitions')).toHaveText('0, 1, 2');
  await expect(monitor.getByRole('list', { name: 'Last errors' })).toContainText('sent to the Dead Letter Queue');
  await expect(monitor.getByRole('table', { name: 'Recent runs' })).toContainText('succeeded');

  await inputRow.getByRole('button', { name: `Edit Subscribe on ${t.input}` }).click();
  dialog = page.getByRole('dialog', { name: 'Edit listener' });
  await expect(dialog.getByLabel('Version')).toHaveValue('1.0.0');
  await expect(dialog.getByLabel('Enable Dead Letter Queue')).toBeChecked();
  await expect(dialog.getByTestId('outputs-go')).toContainText(`Version 1.0.0 publishes to ${t.output}`);
  await dialog.getByLabel('Version').selectOption('1.1.0');
  // The publish flow keeps 1.0.0: the dialog says so before saving.
  await expect(dialog.getByTestId('outputs-go')).toHaveText('Version 1.1.0 publishes nowhere: no publish flow takes its outputs.');
  await dialog.getByRole('button', { name: 'Save Changes' }).click();
  await expect(page.getByRole('status')).toHaveText(`Changes to the listener on ${t.input} saved.`);
  await expect(inputRow).toContainText('1.1.0');
  await expect(inputRow).toContainText('Per partition');

  // Ordering and concurrent runs, in the dialog's closed Advanced section.
  await inputRow.getByRole('button', { name: `Edit Subscribe on ${t.input}` }).click();
  dialog = page.getByRole('dialog', { name: 'Edit listener' });
  await expect(dialog.getByLabel('Ordering')).toBeHidden();
  await dialog.getByText('Advanced').click();
  await expect(dialog.getByLabel('Ordering')).toHaveValue('partition');
  await expect(dialog.getByLabel('Concurrent runs per partition')).toBeDisabled();
  // A Kafka partition's messages are never given back.
  await expect(dialog.getByLabel('Give messages back to the queue on a transient failure')).toHaveCount(0);
  await dialog.getByLabel('Ordering').selectOption({ label: 'Per key' });
  await expect(dialog.getByText('Messages with the same key run in order; different keys run at the same time.')).toBeVisible();
  await expect(dialog.getByLabel('Concurrent runs per partition')).toHaveValue('32');
  await dialog.getByLabel('Concurrent runs per partition').fill('0');
  await dialog.getByRole('button', { name: 'Save Changes' }).click();
  await expect(dialog.getByRole('alert')).toContainText('must be between 1 and 256');
  await dialog.getByLabel('Concurrent runs per partition').fill('16');
  await dialog.getByRole('button', { name: 'Save Changes' }).click();
  await expect(page.getByRole('status')).toHaveText(`Changes to the listener on ${t.input} saved.`);
  await expect(inputRow).toContainText('Per key, 16 at once');
  await expect(monitor.getByTestId('flow-ordering')).toHaveText('Per key, 16 at once');

  // Without a Dead Letter Queue, a failed message is kept and shown.
  await inputRow.getByRole('button', { name: `Edit Subscribe on ${t.input}` }).click();
  dialog = page.getByRole('dialog', { name: 'Edit listener' });
  await dialog.getByLabel('Enable Dead Letter Queue').uncheck();
  await dialog.getByRole('button', { name: 'Save Changes' }).click();
  await expect(page.getByRole('status')).toHaveText(`Changes to the listener on ${t.input} saved.`);
  const kept = await page.request.post('/v1/algo/acme/echo/1.0.0', { data: { kept_for_later: true } });
  expect(kept.status()).toBe(200);
  await inputRow.getByRole('button', { name: `Monitor Subscribe on ${t.input}` }).click();
  const failure = monitor.getByTestId('dead-letter').first();
  await expect(failure).toContainText('"kept_for_later": true', { timeout: 30_000 });
  await expect(failure).toContainText('version 1.1.0');
  await expect(monitor.getByTestId('dead-letters-source')).toContainText('Kept by the flow');
  await expect(monitor.getByTestId('failures-kept')).toHaveText(
    '1 failed message kept by the flow.',
  );

  await inputRow.getByRole('button', { name: `Disable Subscribe on ${t.input}` }).click();
  const confirm = page.getByRole('dialog', { name: 'Disable listener?' });
  await expect(confirm).toContainText(`Messages on ${t.input} will no longer be processed`);
  await confirm.getByRole('button', { name: 'Disable' }).click();
  await expect(inputRow).toContainText('Disabled');
  await expect(inputRow.getByRole('button', { name: `Enable Subscribe on ${t.input}` })).toBeVisible();
});

test('a member of another organization cannot open the algorithm or change its flows', async ({ page }) => {
  await logIn(page, users.ben);
  await expect(page.getByRole('link', { name: 'acme/sentiment' })).toHaveCount(0);
  await page.goto('/algorithms/acme/sentiment/events');
  // Answered as if it did not exist, so that names cannot be probed.
  await expect(page.getByRole('heading', { name: 'Algorithm not found' })).toBeVisible();
  await expect(page.getByText('There is no algorithm acme/sentiment in your organizations.')).toBeVisible();
  const reply = await page.request.post('/api/list_events', { data: { org: 'acme', name: 'sentiment' } });
  expect(reply.status()).toBe(404);
});

test('the Overview tab lists versions newest first and adds one', async ({ page }) => {
  await logIn(page, users.ana);
  await page.goto('/algorithms/acme/word-count');
  const rows = page.getByRole('region', { name: 'Versions' }).getByRole('row');
  await expect(rows.nth(1)).toContainText('2.0.0');
  await expect(rows.nth(2)).toContainText('1.0.0');
  const version = `3.${Date.now() % 1000}.0`;
  await page.getByRole('textbox', { name: 'Version' }).fill('3.0');
  await page.getByRole('textbox', { name: 'Runtime' }).fill('builtin:word-count');
  await page.getByRole('button', { name: 'Add version' }).click();
  await expect(page.getByText("'3.0' is not a version")).toBeVisible();
  await page.getByRole('textbox', { name: 'Version' }).fill(version);
  await page.getByRole('button', { name: 'Add version' }).click();
  await expect(page.getByRole('status')).toHaveText(`Version ${version} added.`);
  await expect(rows.nth(1)).toContainText(version);
});

test('a member sets batches for a version whose model takes them', async ({ page, baseURL }) => {
  const { admin, id } = await connectAsAdmin(baseURL!, 'batches');
  const input = unique('texts');
  await call(admin, 'create_topic', { id, topic: input, partitions: 1 });
  await call(admin, 'save_topic_grants', {
    id, topic: input, grants: [{ algorithm: 'acme/word-count', access: { subscribe: true, publish: false } }],
  });
  const version = `9.${Date.now() % 1000}.0`;
  // The model server must be allowed first (by this test, or by an earlier try of it).
  const allowed = await admin.post('/api/allow_model_host', { data: { entry: '127.0.0.1:9' } });
  expect([200, 409], await allowed.text()).toContain(allowed.status());
  await call(admin, 'add_version', {
    org: 'acme', name: 'word-count', version, runtime: 'http-batch:http://127.0.0.1:9/v1/models/words:predict',
  });
  await admin.dispose();

  await logIn(page, users.ana);
  await page.goto('/algorithms/acme/word-count/events');
  const inputRow = page.getByRole('row').filter({ hasText: input }).filter({ hasText: 'Subscribe' });
  await inputRow.getByRole('button', { name: `Enable Subscribe on ${input}` }).click();
  const dialog = page.getByRole('dialog', { name: 'Enable listener' });
  await dialog.getByText('Advanced').click();
  // A version whose model takes one input at a time has no batch fields.
  await dialog.getByLabel('Version').selectOption('2.0.0');
  await expect(dialog.getByLabel('Batch size')).toHaveCount(0);
  await dialog.getByLabel('Version').selectOption(version);
  await expect(dialog.getByLabel('Batch size')).toHaveValue('32');
  await expect(dialog.getByLabel('Batch wait (ms)')).toHaveValue('20');
  await dialog.getByLabel('Batch size').fill('300');
  await expect(dialog.getByLabel('Batch size')).toHaveAttribute('aria-invalid', 'true');
  await dialog.getByRole('button', { name: 'Enable Listener' }).click();
  await expect(dialog.getByRole('alert')).toContainText('Batch size must be between 1 and 256.');
  await dialog.getByLabel('Batch size').fill('16');
  await dialog.getByLabel('Batch wait (ms)').fill('50');
  await dialog.getByRole('button', { name: 'Enable Listener' }).click();
  await expect(page.getByRole('status')).toHaveText(`Listener on ${input} enabled.`);
  await expect(inputRow).toContainText('Per partition; batches of 16 (wait 50 ms)');
  await inputRow.getByRole('button', { name: `Monitor Subscribe on ${input}` }).click();
  await expect(page.getByTestId('flow-ordering')).toHaveText('Per partition; batches of 16 (wait 50 ms)');
  await inputRow.getByRole('button', { name: `Disable Subscribe on ${input}` }).click();
  await page.getByRole('dialog', { name: 'Disable listener?' }).getByRole('button', { name: 'Disable' }).click();
  await expect(inputRow).toContainText('Disabled');
});

test('a member finds dead letters on the monitor, filters them and replays them with another version', async ({ page, baseURL }) => {
  const { admin, id } = await connectAsAdmin(baseURL!, 'replays');
  const t = { input: unique('texts'), output: unique('counts'), dlq: unique('texts-dlq') };
  for (const topic of [t.input, t.output, t.dlq]) {
    await call(admin, 'create_topic', { id, topic, partitions: 1 });
  }
  const grant = (algorithm: string, subscribe: boolean, publish: boolean) => ({ algorithm, access: { subscribe, publish } });
  await call(admin, 'save_topic_grants', {
    id, topic: t.input, grants: [grant('acme/word-count', true, false), grant('acme/echo', false, true)],
  });
  for (const topic of [t.output, t.dlq]) {
    await call(admin, 'save_topic_grants', { id, topic, grants: [grant('acme/word-count', false, true)] });
  }
  // A version that takes what 2.0.0 refuses (inputs without "text").
  const lenient = `7.${Date.now() % 1000}.0`;
  await call(admin, 'add_version', { org: 'acme', name: 'word-count', version: lenient, runtime: 'builtin:echo' });
  await admin.dispose();

  await logIn(page, users.ana);
  const flow = (name: string, topic: string, direction: string, version: string, dlq_topic: string | null) =>
    call(page.request, 'save_flow', {
      request: { org: 'acme', name, connection_id: id, topic, direction, version, dlq_topic },
    });
  await flow('word-count', t.input, 'Subscribe', '2.0.0', t.dlq);
  await flow('word-count', t.output, 'Publish', lenient, null);
  await flow('echo', t.input, 'Publish', '1.0.0', null);
  for (const body of [{ text: 'three words here' }, { no_text: 1 }, { no_text: 2 }]) {
    const reply = await page.request.post('/v1/algo/acme/echo/1.0.0', { data: body });
    expect(reply.status()).toBe(200);
  }

  await page.goto('/algorithms/acme/word-count/events');
  const inputRow = page.getByRole('row').filter({ hasText: t.input }).filter({ hasText: 'Subscribe' });
  await inputRow.getByRole('button', { name: `Monitor Subscribe on ${t.input}` }).click();
  const monitor = page.getByRole('region', { name: `Flow Subscribe on ${t.input}` });
  const letters = monitor.getByRole('region', { name: 'Dead letters' });
  await expect(monitor.getByTestId('stat-dead-lettered')).toHaveText('2', { timeout: 30_000 });
  await expect(letters.getByTestId('dead-letters-source')).toContainText(`From the Dead Letter Queue ${t.dlq}`);
  await expect(letters.getByTestId('dead-letter')).toHaveCount(2);
  await expect(letters.getByTestId('dead-letter').first()).toContainText('"no_text": 2');
  await expect(letters.getByTestId('dead-letter').first()).toContainText('bad-input');

  // Filters: another kind finds none; this kind finds both.
  await letters.getByLabel('Error kind').selectOption('transient');
  await letters.getByRole('button', { name: 'Filter' }).click();
  await expect(letters.getByTestId('no-dead-letters')).toHaveText('No dead letters match.');
  await letters.getByLabel('Error kind').selectOption('bad-input');
  await letters.getByRole('button', { name: 'Filter' }).click();
  await expect(letters.getByTestId('dead-letter')).toHaveCount(2);

  await letters.getByLabel('Select every dead letter on this page').check();
  await letters.getByRole('button', { name: 'Replay selected (2)' }).click();
  const dialog = page.getByRole('dialog', { name: 'Replay dead letters' });
  await expect(dialog).toContainText('Runs the 2 selected dead letters again');
  await dialog.getByLabel('Version').selectOption(lenient);
  await dialog.getByRole('button', { name: 'Replay' }).click();
  await expect(dialog).toBeHidden();
  await expect(letters.getByRole('status')).toHaveText('Replay started. Its progress shows under Replays.');
  const replay = monitor.getByTestId('replay').first();
  await expect(replay.getByTestId('replay-state')).toHaveText('done', { timeout: 30_000 });
  await expect(replay).toContainText(`version ${lenient} · by ana`);
  await expect(replay).toContainText('2 succeeded, 0 failed again, 0 left of 2');
  await expect(letters.getByTestId('dead-letter-replayed')).toHaveText(['replayed, succeeded', 'replayed, succeeded']);

  // Try the lenient version on the newest messages, side by side.
  const tryIt = monitor.getByRole('region', { name: 'Try a version' });
  await tryIt.getByLabel('Candidate version').selectOption(lenient);
  await tryIt.getByLabel('How many').fill('3');
  await tryIt.getByRole('button', { name: 'Run' }).click();
  await expect(tryIt.getByTestId('dry-run-summary')).toHaveText(`0 same, 3 different, 0 failed (${lenient} against 2.0.0).`);
  await expect(tryIt.getByTestId('comparison')).toHaveCount(3);
  await expect(tryIt.getByTestId('comparison').first()).toContainText('"no_text": 2');
  await expect(tryIt.locator('[data-changed="true"]').first()).toBeVisible();
  await tryIt.getByRole('button', { name: 'Use this version' }).click();
  const edit = page.getByRole('dialog', { name: 'Edit listener' });
  await expect(edit.getByLabel('Version')).toHaveValue(lenient);
  await page.keyboard.press('Escape');
  await expect(edit).toBeHidden();

  // Pause, rewind to the earliest message, resume: the three run again.
  await expect(monitor.getByTestId('stat-consumed')).toHaveText('3');
  await monitor.getByRole('button', { name: 'Pause' }).click();
  await expect(monitor.getByTestId('flow-state')).toHaveText('paused');
  await expect(inputRow).toContainText('Paused');
  await monitor.getByRole('button', { name: 'Rewind…' }).click();
  const rewind = page.getByRole('dialog', { name: 'Rewind the flow' });
  await expect(rewind.getByRole('button', { name: 'Rewind' })).toBeDisabled();
  await rewind.getByLabel('Start from').selectOption({ label: 'The earliest message' });
  await rewind.getByRole('button', { name: 'Preview' }).click();
  await expect(rewind.getByTestId('rewind-count')).toHaveText('3 messages will be processed from the new position.');
  await rewind.getByRole('button', { name: 'Rewind' }).click();
  await expect(rewind).toBeHidden();
  await expect(monitor.getByRole('status').filter({ hasText: 'Rewound' })).toHaveText(
    'Rewound: 3 messages will be processed when the flow resumes.',
  );
  await monitor.getByRole('button', { name: 'Resume' }).click();
  await expect(monitor.getByTestId('stat-consumed')).toHaveText('6', { timeout: 30_000 });
  await expect(monitor.getByTestId('flow-state')).toHaveText('running');
});

const sqsEndpoint = `http://127.0.0.1:${process.env.E2E_MOTO_PORT ?? 19193}`;

/** Calls the SQS-compatible test server (moto) as another program would. */
async function sqs(action: string, params: Record<string, string>) {
  const api = await playwrightRequest.newContext();
  // moto tells SQS from its other services by the credential scope; it
  // checks no signature.
  const reply = await api.post(`${sqsEndpoint}/`, {
    headers: {
      Authorization: 'AWS4-HMAC-SHA256 Credential=AKIAEVENTFLOWSE2E/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0',
    },
    form: { Action: action, ...params },
  });
  expect(reply.status(), await reply.text()).toBe(200);
  await api.dispose();
}

test('a member enables a listener on an SQS queue and watches it work', async ({ page, baseURL }) => {
  const admin = await playwrightRequest.newContext({ baseURL });
  await call(admin, 'login', { username: users.admin.name, password: users.admin.password });
  const id: string = await call(admin, 'connect_broker', {
    connection: {
      kind: 'sqs', name: unique('sqs'), region: 'us-east-1', endpoint_url: sqsEndpoint,
      access_key_id: 'AKIAEVENTFLOWSE2E', secret_access_key: 'e2e-secret-key',
    },
  });
  const queue = unique('reviews');
  const letters = unique('letters');
  await call(admin, 'create_topic', { id, topic: queue, partitions: 1 });
  await call(admin, 'save_topic_grants', {
    id, topic: queue, grants: [{ algorithm: 'acme/sentiment', access: { subscribe: true, publish: false } }],
  });
  await call(admin, 'create_topic', { id, topic: letters, partitions: 1 });
  await call(admin, 'save_topic_grants', {
    id, topic: letters, grants: [{ algorithm: 'acme/sentiment', access: { subscribe: false, publish: true } }],
  });
  await admin.dispose();

  await logIn(page, users.ana);
  await page.goto('/algorithms/acme/sentiment/events');
  const row = page.getByRole('row').filter({ hasText: queue });
  await row.getByRole('button', { name: `Enable Subscribe on ${queue}` }).click();
  const dialog = page.getByRole('dialog', { name: 'Enable listener' });
  await dialog.getByLabel('Version').selectOption('1.0.0');
  await dialog.getByLabel('Enable Dead Letter Queue').check();
  await dialog.getByLabel('Dead Letter Queue topic').selectOption(letters);
  await dialog.getByText('Advanced').click();
  const giveBack = dialog.getByLabel('Give messages back to the queue on a transient failure');
  await expect(giveBack).not.toBeChecked();
  await expect(dialog.getByText(/as AWS Lambda and Azure Functions do/)).toBeVisible();
  await giveBack.check();
  await dialog.getByRole('button', { name: 'Enable Listener' }).click();
  await expect(page.getByRole('status')).toHaveText(`Listener on ${queue} enabled.`);
  await expect(row).toContainText('Enabled');
  await expect(row).toContainText(letters);
  await expect(row).toContainText('gives back on transient failures');

  const url = `${sqsEndpoint}/123456789012/${queue}`;
  for (const body of ['{"text": "I love it"}', '{"text": "awful"}', '"no object"']) {
    await sqs('SendMessage', { QueueUrl: url, MessageBody: body });
  }
  await row.getByRole('button', { name: `Monitor Subscribe on ${queue}` }).click();
  const monitor = page.getByRole('region', { name: `Flow Subscribe on ${queue}` });
  await expect(monitor.getByTestId('stat-succeeded')).toHaveText('2', { timeout: 30_000 });
  await expect(monitor.getByTestId('stat-dead-lettered')).toHaveText('1');
  await expect(monitor.getByTestId('stat-consumed')).toHaveText('3');
  await expect(monitor.getByTestId('flow-state')).toHaveText('running');
  await expect(monitor.getByRole('table', { name: 'Recent runs' })).toContainText(/message \S+ \(received 1×\)/);
  // The failed message is on the Dead Letter Queue, read back from it.
  const deadLetters = monitor.getByRole('region', { name: 'Dead letters' });
  await expect(deadLetters.getByTestId('dead-letters-source')).toContainText(`From the Dead Letter Queue ${letters}`);
  await expect(deadLetters.getByRole('list', { name: 'Dead letter list' })).toContainText('no object', { timeout: 15_000 });
  await expect(deadLetters.getByRole('list', { name: 'Dead letter list' })).toContainText(/message \S+ \(\d+ receives before this read\)/);

  // Without its Dead Letter Queue, the flow keeps the next failure, which
  // the page offers besides the (new, empty) queue.
  const lettersUrl = `${sqsEndpoint}/123456789012/${letters}`;
  await sqs('DeleteQueue', { QueueUrl: lettersUrl });
  await sqs('SendMessage', { QueueUrl: url, MessageBody: '"kept instead"' });
  await expect(monitor.getByTestId('failures-kept')).toHaveText('1 failed message kept by the flow.', { timeout: 60_000 });
  await sqs('CreateQueue', { QueueName: letters });
  await deadLetters.getByRole('button', { name: 'Refresh' }).click();
  await deadLetters.getByRole('button', { name: 'Show the 1 failure kept by the flow' }).click();
  await expect(deadLetters.getByTestId('dead-letters-source')).toContainText('Kept by the flow besides its Dead Letter Queue');
  await expect(deadLetters.getByRole('list', { name: 'Dead letter list' })).toContainText('kept instead');
  await deadLetters.getByRole('button', { name: 'Show the Dead Letter Queue' }).click();
  await expect(deadLetters.getByTestId('dead-letters-source')).toContainText(`From the Dead Letter Queue ${letters}`);
});
