// Create forms: a capacity provider (`#/new/provider`, CreateCapacityProvider) and a function from
// a zip upload (`#/new/function`, CreateFunction with a capacity provider, optionally PublishVersion
// once $LATEST has settled). The API validates; its messages are shown verbatim in the form's
// alert and the field they name gets focus.

import { h } from '../app.js';

const enc = encodeURIComponent;
const DEFAULT_ACCOUNT = '000000000000';

// The runtimes fleetfn accepts for capacity-provider functions (crates/fleetfn-model/src/runtimes.rs).
export const RUNTIMES = [
  'python3.13', 'python3.14', 'nodejs22.x', 'nodejs24.x', 'java21', 'java25', 'provided.al2023', 'provided.al2',
];

function defaultHandler(runtime) {
  if (runtime.startsWith('provided')) return 'bootstrap';
  if (runtime.startsWith('java')) return 'example.Handler::handleRequest';
  if (runtime.startsWith('nodejs')) return 'index.handler';
  return 'app.handler';
}

function accountOf(arn) {
  const m = /^arn:[^:]+:[^:]+:[^:]*:(\d{12}):/.exec(String(arn || ''));
  return m ? m[1] : null;
}

function field(id, label, control, hint, wide) {
  return h('div', { class: `field${wide ? ' wide' : ''}` },
    h('label', { for: id, text: label }),
    control,
    hint ? h('span', { class: 'hint', id: `${id}-hint`, text: hint }) : null);
}

function input(id, attrs = {}) {
  const el = h('input', { id, name: id, spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off', ...attrs });
  if (attrs.value !== undefined) el.value = attrs.value;
  el.setAttribute('aria-describedby', `${id}-hint`);
  return el;
}

function list(value) {
  return String(value || '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** Shows the API's message and focuses the first field whose name it mentions. */
function showError(errorEl, message, fields, fallback) {
  errorEl.textContent = message;
  for (const el of Object.values(fields)) el.removeAttribute('aria-invalid');
  for (const [pattern, el] of fields.__order) {
    if (pattern.test(message)) {
      el.setAttribute('aria-invalid', 'true');
      el.focus();
      return;
    }
  }
  (fallback || errorEl).focus?.();
}

async function knownAccount(api) {
  try {
    const doc = await api.call('GET', '/2025-11-30/capacity-providers');
    for (const cp of doc.CapacityProviders || []) {
      const a = accountOf(cp.CapacityProviderArn);
      if (a) return { account: a, providers: doc.CapacityProviders };
    }
    return { account: null, providers: doc.CapacityProviders || [] };
  } catch {
    return { account: null, providers: [] };
  }
}

function pageHead(title, sub) {
  return h('div', { class: 'page-head' },
    h('div', {}, h('div', { class: 'crumbs' }, h('a', { href: '#/', text: 'Overview' }), ` / ${title}`),
      h('h1', { text: title }), h('p', { class: 'sub', text: sub })));
}

// ---------------------------------------------------------------------------------------------

export async function renderNewProvider(root, params, ctx) {
  const { api } = ctx;
  const name = input('provider-name', { required: true, maxlength: '140', placeholder: 'my-capacity-provider' });
  const subnets = input('provider-subnets', { value: 'subnet-a,subnet-b,subnet-c' });
  const sgs = input('provider-security-groups', { value: 'sg-console' });
  const role = input('provider-role', { value: `arn:aws:iam::${DEFAULT_ACCOUNT}:role/fleetfn-operator` });
  const arch = h('select', { id: 'provider-arch', name: 'provider-arch' },
    h('option', { value: 'x86_64', text: 'x86_64' }), h('option', { value: 'arm64', text: 'arm64' }));
  const maxVcpu = input('provider-max-vcpu', { type: 'number', min: '2', step: '1', inputmode: 'numeric', placeholder: 'no limit' });
  const types = input('provider-instance-types', { placeholder: 'c7i.large, c7i.xlarge' });
  const submit = h('button', { id: 'provider-submit', type: 'submit', class: 'btn btn-primary', text: 'Create capacity provider' });
  const error = h('p', { id: 'provider-error', class: 'form-error', role: 'alert', tabindex: '-1' });
  const fields = { name, subnets, sgs, role, arch, maxVcpu, types };
  fields.__order = [
    [/CapacityProviderOperatorRoleArn|role/i, role],
    [/MaxVCpuCount|vcpu/i, maxVcpu],
    [/InstanceType/i, types],
    [/Architecture/i, arch],
    [/SecurityGroup/i, sgs],
    [/Subnet/i, subnets],
    [/CapacityProviderName|name/i, name],
  ];
  Object.defineProperty(fields, '__order', { enumerable: false });

  const form = h('form', { id: 'provider-form', class: 'panel form', novalidate: true },
    h('div', { class: 'form-grid' },
      field('provider-name', 'Name', name, 'Letters, digits, hyphens and underscores.', true),
      field('provider-subnets', 'Subnets (zones)', subnets, 'Comma separated; each subnet is one zone instances spread over.'),
      field('provider-security-groups', 'Security groups', sgs, 'Comma separated.'),
      field('provider-role', 'Operator role ARN', role, 'The role the capacity provider manages instances with.', true),
      field('provider-arch', 'Architecture', arch, 'Instances and functions on it share it.'),
      field('provider-max-vcpu', 'MaxVCpuCount', maxVcpu, 'Upper bound on instance vCPUs; empty for the default.'),
      field('provider-instance-types', 'Allowed instance types', types, 'Optional, comma separated; empty allows every type.', true)),
    error,
    h('div', { class: 'form-actions' }, submit, h('a', { class: 'btn btn-quiet', href: '#/', text: 'Cancel' })));

  root.append(pageHead('New capacity provider', 'CreateCapacityProvider: the instances your function versions run on.'), form);
  name.focus();

  knownAccount(api).then(({ account }) => {
    if (account && role.value === `arn:aws:iam::${DEFAULT_ACCOUNT}:role/fleetfn-operator`) {
      role.value = `arn:aws:iam::${account}:role/fleetfn-operator`;
    }
  }).catch(() => {});

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    create().catch(() => {});
  });

  async function create() {
    if (submit.disabled) return;
    error.textContent = '';
    const body = {
      CapacityProviderName: name.value.trim(),
      VpcConfig: { SubnetIds: list(subnets.value), SecurityGroupIds: list(sgs.value) },
      PermissionsConfig: { CapacityProviderOperatorRoleArn: role.value.trim() },
      InstanceRequirements: { Architectures: [arch.value] },
    };
    const allowed = list(types.value);
    if (allowed.length) body.InstanceRequirements.AllowedInstanceTypes = allowed;
    if (maxVcpu.value.trim() !== '') {
      const n = Number(maxVcpu.value);
      body.CapacityProviderScalingConfig = { MaxVCpuCount: Number.isFinite(n) ? n : maxVcpu.value };
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    try {
      await api.call('POST', '/2025-11-30/capacity-providers', { body });
    } catch (e) {
      showError(error, e.message, fields);
      return;
    } finally {
      submit.disabled = false;
      submit.textContent = 'Create capacity provider';
    }
    ctx.toast(`Capacity provider ${body.CapacityProviderName} created.`, 'success');
    ctx.navigate(`#/providers/${enc(body.CapacityProviderName)}`);
  }
}

// ---------------------------------------------------------------------------------------------

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const s = String(r.result || '');
      resolve(s.slice(s.indexOf(',') + 1));
    };
    r.onerror = () => reject(new Error(`Could not read ${file.name}: ${r.error?.message || 'read error'}`));
    r.readAsDataURL(file);
  });
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

/** Waits until $LATEST is no longer Pending / InProgress (AWS refuses a publish before). */
async function settled(api, fn, timeoutMs = 60000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const cfg = await api.call('GET', `/2015-03-31/functions/${enc(fn)}/configuration`);
    if (cfg.State !== 'Pending' && cfg.LastUpdateStatus !== 'InProgress') return cfg;
    if (Date.now() > until) throw new Error(`${fn} is still ${cfg.State} after ${timeoutMs / 1000} s; publish it from its page.`);
    await sleep(500);
  }
}

export async function renderNewFunction(root, params, ctx) {
  const { api } = ctx;
  const name = input('function-name', { required: true, maxlength: '64', placeholder: 'hello' });
  const runtime = h('select', { id: 'function-runtime', name: 'function-runtime' },
    RUNTIMES.map((r) => h('option', { value: r, text: r })));
  const handler = input('function-handler', { value: defaultHandler(RUNTIMES[0]) });
  const role = input('function-role', { value: `arn:aws:iam::${DEFAULT_ACCOUNT}:role/fleetfn-execution` });
  const provider = h('select', { id: 'function-provider', name: 'function-provider' },
    h('option', { value: '', text: 'Loading capacity providers…' }));
  const memory = input('function-memory', { type: 'number', min: '128', step: '1', inputmode: 'numeric', value: '2048' });
  const zip = h('input', { id: 'function-zip', name: 'function-zip', type: 'file', accept: '.zip,application/zip', 'aria-describedby': 'function-zip-hint' });
  const publish = h('input', { id: 'function-publish', name: 'function-publish', type: 'checkbox' });
  const submit = h('button', { id: 'function-submit', type: 'submit', class: 'btn btn-primary', text: 'Create function' });
  const error = h('p', { id: 'function-error', class: 'form-error', role: 'alert', tabindex: '-1' });
  const progress = h('span', { id: 'function-progress', class: 'muted', 'aria-live': 'polite' });
  const fields = { name, runtime, handler, role, provider, memory, zip };
  Object.defineProperty(fields, '__order', {
    enumerable: false,
    value: [
      [/CapacityProvider/i, provider],
      [/MemorySize|memory/i, memory],
      [/Handler/i, handler],
      [/Runtime/i, runtime],
      [/\bRole\b|role ARN|execution role/i, role],
      [/ZipFile|Code|zip/i, zip],
      [/FunctionName|function name|name/i, name],
    ],
  });

  let handlerEdited = false;
  handler.addEventListener('input', () => { handlerEdited = true; });
  runtime.addEventListener('change', () => {
    if (!handlerEdited) handler.value = defaultHandler(runtime.value);
  });

  const form = h('form', { id: 'function-form', class: 'panel form', novalidate: true },
    h('div', { class: 'form-grid' },
      field('function-name', 'Function name', name, 'Letters, digits, hyphens and underscores, up to 64.', true),
      field('function-runtime', 'Runtime', runtime, 'The runtimes fleetfn runs on managed instances.'),
      field('function-handler', 'Handler', handler, 'module.function, or bootstrap for provided.*'),
      field('function-provider', 'Capacity provider', provider, 'The versions run on its instances.'),
      field('function-memory', 'Memory (MiB)', memory, 'Per execution environment.'),
      field('function-role', 'Execution role ARN', role, 'The role the function runs as.', true),
      field('function-zip', 'Code (.zip)', zip, 'A deployment package, at most 50 MB.', true),
      h('div', { class: 'field wide' },
        h('label', { class: 'check', for: 'function-publish' }, publish, 'Publish a version right after creating it'),
        h('span', { class: 'hint', text: 'A capacity provider runs published versions only; publishing starts their execution environments.' }))),
    error,
    h('div', { class: 'form-actions' }, submit, h('a', { class: 'btn btn-quiet', href: '#/', text: 'Cancel' }), progress));

  root.append(pageHead('New function', 'CreateFunction from a zip, on a capacity provider.'), form);
  name.focus();

  const { account, providers } = await knownAccount(api);
  if (account) role.value = `arn:aws:iam::${account}:role/fleetfn-execution`;
  provider.replaceChildren(...(providers.length
    ? providers.map((cp) => {
      const n = cp.CapacityProviderArn.split(':').pop();
      const o = h('option', { value: cp.CapacityProviderArn, text: `${n} (${cp.InstanceRequirements?.Architectures?.[0] || 'x86_64'}, ${cp.State})` });
      o.dataset.arch = cp.InstanceRequirements?.Architectures?.[0] || 'x86_64';
      return o;
    })
    : [h('option', { value: '', text: 'No capacity providers: create one first' })]));
  const wanted = params?.provider;
  if (wanted) for (const o of provider.options) if (o.value.endsWith(`:${wanted}`)) provider.value = o.value;
  if (!providers.length) {
    error.textContent = '';
    form.querySelector('.form-actions').append(h('a', { class: 'btn', href: '#/new/provider', text: 'New capacity provider' }));
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    create().catch(() => {});
  });

  async function create() {
    if (submit.disabled) return;
    error.textContent = '';
    const file = zip.files?.[0];
    if (!file) {
      showError(error, 'Choose the function\u2019s code: a .zip deployment package.', fields, zip);
      zip.setAttribute('aria-invalid', 'true');
      zip.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Creating…';
    const fn = name.value.trim();
    try {
      progress.textContent = `Reading ${file.name}…`;
      const zipFile = await readBase64(file);
      const body = {
        FunctionName: fn,
        Runtime: runtime.value,
        Role: role.value.trim(),
        Handler: handler.value.trim(),
        Code: { ZipFile: zipFile },
        CapacityProviderConfig: {
          LambdaManagedInstancesCapacityProviderConfig: { CapacityProviderArn: provider.value },
        },
      };
      const arch = provider.selectedOptions[0]?.dataset.arch;
      if (arch) body.Architectures = [arch];
      if (memory.value.trim() !== '') {
        const m = Number(memory.value);
        body.MemorySize = Number.isFinite(m) ? m : memory.value;
      }
      progress.textContent = 'Creating the function…';
      try {
        await api.call('POST', '/2015-03-31/functions', { body });
      } catch (e) {
        showError(error, e.message, fields);
        return;
      }
      if (publish.checked) {
        try {
          progress.textContent = 'Waiting for $LATEST to be ready…';
          await settled(api, fn);
          progress.textContent = 'Publishing a version…';
          const v = await api.call('POST', `/2015-03-31/functions/${enc(fn)}/versions`, { body: {} });
          ctx.toast(`Created ${fn} and published version ${v?.Version ?? ''}.`, 'success');
        } catch (e) {
          ctx.toast(`Created ${fn}, but publishing failed: ${e.message}`, 'error');
        }
      } else {
        ctx.toast(`Created ${fn}.`, 'success');
      }
      ctx.navigate(`#/functions/${enc(fn)}`);
    } catch (e) {
      showError(error, e.message, fields);
    } finally {
      progress.textContent = '';
      submit.disabled = false;
      submit.textContent = 'Create function';
    }
  }
}

export const render = renderNewProvider;
