// Overview (`#/`): the fleet at a glance from `GET /fleetfn/v1/status`, polled every 2 s:
// invocations per second, throttles by reason in the last minute, every version with its state
// and environments per zone, and every capacity provider with its instances per zone.

import { h, morph, bar, badge, table, hashFor } from '../app.js';

const REASONS = ['Concurrency', 'CPU', 'Memory', 'Disk'];

/** Invocations per second of one status entry; without the field, from the counter's change. */
function rateOf(f, prev, now) {
  if (typeof f.InvocationsPerSecond === 'number') return f.InvocationsPerSecond;
  const p = prev.get(`${f.FunctionName}:${f.Version}`);
  if (!p || now <= p.at) return 0;
  return Math.max(0, (f.Invocations - p.invocations) / ((now - p.at) / 1000));
}

function throttlesOf(f) {
  const by = f.ThrottlesLastMinuteByReason;
  const out = { Total: 0 };
  for (const r of REASONS) out[r] = Number(by?.[r]) || 0;
  out.Total = by ? Number(by.Total) || REASONS.reduce((s, r) => s + out[r], 0) : Number(f.ThrottlesLastMinute) || 0;
  return out;
}

function memoryByInstance(functions) {
  const m = new Map();
  for (const f of functions) {
    for (const e of f.Environments || []) {
      m.set(e.InstanceId, (m.get(e.InstanceId) || 0) + (Number(e.MemoryBytes) || 0));
    }
  }
  return m;
}

function stat(label, value, note, extra) {
  return h('section', { class: 'stat', 'aria-label': label },
    h('div', { class: 'stat-label', text: label }),
    value,
    note ? h('div', { class: 'stat-note', text: note }) : null,
    extra || null);
}

function zonesOf(cp) {
  const zones = [...(cp.Zones || [])];
  for (const i of cp.Instances || []) if (!zones.includes(i.Zone)) zones.push(i.Zone);
  return zones;
}

function instanceCard(i, memBytes, fmt) {
  const memMiB = memBytes / (1024 * 1024);
  const cpu = Number(i.CpuUtilization) || 0;
  return h('div', { class: 'instance', dataset: { instance: i.InstanceId, key: i.InstanceId } },
    h('div', { class: 'instance-top' },
      h('span', { class: 'tag', text: i.InstanceType }),
      badge(i.State)),
    h('div', { class: 'instance-id', text: i.InstanceId }),
    h('div', { class: 'muted', text: `${i.VCpus} vCPU · ${fmt.mib(i.MemoryMiB)} · ${i.Environments} env${i.Environments === 1 ? '' : 's'}` }),
    bar(cpu, `${fmt.num(cpu * i.VCpus, 2)}/${i.VCpus}`, { name: 'vCPU' }),
    bar(i.MemoryMiB ? memMiB / i.MemoryMiB : 0, `${fmt.mib(memMiB)}`, { name: 'Mem' }));
}

function providerCard(cp, memByInstance, fmt) {
  const instances = cp.Instances || [];
  const zones = zonesOf(cp);
  const max = Number(cp.MaxVCpuCount) || 0;
  return h('article', { class: 'provider-card', dataset: { provider: cp.Name, key: `cp:${cp.Name}` } },
    h('div', { class: 'provider-head' },
      h('h3', {}, h('a', { href: hashFor('providers', cp.Name), text: cp.Name })),
      badge(cp.State),
      h('span', { class: 'tag', text: cp.Architecture || 'x86_64' }),
      h('span', { class: 'muted', text: `${instances.length} instance${instances.length === 1 ? '' : 's'} in ${zones.length} zone${zones.length === 1 ? '' : 's'}` })),
    cp.LaunchError ? h('div', { class: 'alert alert-warn', role: 'status' },
      `Instance launch failing: ${cp.LaunchError.Message}`,
      cp.LaunchError.RetryAt ? ` (retry ${fmt.ago(cp.LaunchError.RetryAt)})` : '') : null,
    h('div', { class: 'provider-meta' },
      h('div', {}, h('div', { class: 'k', text: 'vCPUs allocated to environments' }),
        bar(cp.VCpus ? cp.AllocatedVCpus / cp.VCpus : 0, `${fmt.num(cp.AllocatedVCpus)} / ${cp.VCpus}`)),
      h('div', {}, h('div', { class: 'k', text: 'Memory allocated' }),
        bar(cp.MemoryMiB ? cp.AllocatedMemoryMiB / cp.MemoryMiB : 0, `${fmt.mib(cp.AllocatedMemoryMiB)} / ${fmt.mib(cp.MemoryMiB)}`)),
      h('div', {}, h('div', { class: 'k', text: 'Instance vCPUs of MaxVCpuCount' }),
        bar(max ? cp.VCpus / max : 0, max ? `${cp.VCpus} / ${max}` : `${cp.VCpus}`))),
    h('div', { class: 'zones' }, zones.map((z) => {
      const here = instances.filter((i) => i.Zone === z);
      return h('section', { class: 'zone', dataset: { zone: z, key: `z:${z}` }, 'aria-label': `Zone ${z}` },
        h('h4', { text: z, title: z }),
        here.length ? here.map((i) => instanceCard(i, memByInstance.get(i.InstanceId) || 0, fmt))
          : h('div', { class: 'zone-empty', text: 'No instances' }));
    })));
}

function versionRow(f, rate, fmt) {
  const envs = f.Environments || [];
  const ready = envs.filter((e) => e.State === 'Ready').length;
  const desired = f.DesiredExecutionEnvironments ?? envs.length;
  const zones = new Map();
  for (const e of envs) {
    const z = zones.get(e.Zone) || { ready: 0, all: 0 };
    z.all += 1;
    if (e.State === 'Ready') z.ready += 1;
    zones.set(e.Zone, z);
  }
  const th = throttlesOf(f);
  return h('tr', { dataset: { function: f.FunctionName, version: f.Version, key: `${f.FunctionName}:${f.Version}` } },
    h('td', {}, h('a', { href: hashFor('functions', f.FunctionName), text: f.FunctionName })),
    h('td', { class: 'version mono', text: f.Version }),
    h('td', { class: 'provider' }, f.CapacityProvider
      ? h('a', { href: hashFor('providers', f.CapacityProvider), text: f.CapacityProvider }) : '–'),
    h('td', { class: 'state' }, badge(f.State)),
    h('td', { class: 'envs num', text: `${ready}/${desired}`, title: 'ready / desired execution environments' }),
    h('td', { class: 'zones-cell' }, zones.size
      ? [...zones.entries()].flatMap(([z, c], i) => [i ? ' ' : null, h('span', { class: 'tag', title: `${c.ready} ready of ${c.all} in ${z}`, text: `${z}: ${c.ready}/${c.all}` })])
      : h('span', { class: 'muted', text: '–' })),
    h('td', { class: 'rate num', text: fmt.num(rate, 1) }),
    h('td', { class: 'cpu' }, bar(f.CpuUtilization, fmt.pct(f.CpuUtilization))),
    h('td', { class: `throttles num${th.Total ? ' hot' : ''}`, text: String(th.Total) }),
    h('td', { class: 'errors num', text: fmt.num(f.Errors) }));
}

// ListFunctions is a store read: the overview asks it every 10 s, not on every 2 s status poll.
const LIST_EVERY_MS = 10000;

/** Functions with no published version (the status lists published versions only). */
function unpublishedPanel(list, functions) {
  const published = new Set(functions.map((f) => f.FunctionName));
  const rest = list.filter((f) => !published.has(f.FunctionName));
  if (!rest.length) return null;
  return h('section', { class: 'panel', 'aria-labelledby': 'h-unpublished' },
    h('h2', { id: 'h-unpublished', text: 'Functions without a published version' }),
    h('p', { class: 'note', text: 'A capacity provider runs published versions only: publish one from the function\u2019s page.' }),
    h('ul', { id: 'overview-unpublished', class: 'plain inline-list' }, rest.map((f) => h('li', { dataset: { function: f.FunctionName, key: f.FunctionName } },
      h('a', { href: hashFor('functions', f.FunctionName), text: f.FunctionName }),
      ' ', h('span', { class: 'muted', text: f.Runtime || '' })))));
}

export async function render(root, params, ctx) {
  const { fmt } = ctx;
  const prev = new Map();
  let listed = [];
  let listedAt = 0;
  const body = h('div', { class: 'overview-body' }, h('p', { class: 'loading', text: 'Loading the fleet…' }));
  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { text: 'Overview' }),
        h('p', { class: 'sub', id: 'overview-updated', 'aria-live': 'off', text: 'Fleet status, live every 2 s' })),
      h('div', { class: 'page-actions' },
        h('a', { class: 'btn', href: '#/new/provider', text: 'New capacity provider' }),
        h('a', { class: 'btn btn-primary', href: '#/new/function', text: 'New function' }))),
    body);

  ctx.poll(async () => {
    const st = await ctx.api.call('GET', '/fleetfn/v1/status');
    const now = Date.now();
    if (now - listedAt >= LIST_EVERY_MS) {
      listedAt = now;
      try {
        listed = (await ctx.api.call('GET', '/2015-03-31/functions', { query: { MaxItems: 50 } })).Functions || [];
      } catch {
        // The list is a convenience; the status above is the page.
      }
    }
    const functions = st.Functions || [];
    const providers = st.CapacityProviders || [];
    const rates = functions.map((f) => rateOf(f, prev, now));
    prev.clear();
    for (const f of functions) prev.set(`${f.FunctionName}:${f.Version}`, { invocations: f.Invocations, at: now });
    const totalRate = rates.reduce((a, b) => a + b, 0);
    const throttles = { Total: 0 };
    for (const r of REASONS) throttles[r] = 0;
    for (const f of functions) {
      const t = throttlesOf(f);
      throttles.Total += t.Total;
      for (const r of REASONS) throttles[r] += t[r];
    }
    const instances = providers.flatMap((p) => p.Instances || []);
    const active = functions.filter((f) => f.State === 'Active').length;
    const memByInstance = memoryByInstance(functions);

    const fresh = h('div', {},
      st.DataPlane === false ? h('div', { class: 'alert alert-warn', role: 'status', text: 'This server runs without a data plane (--no-data-plane): it keeps the control plane only, so there are no instances or environments to show.' }) : null,
      h('div', { class: 'stats' },
        stat('Invocations / s',
          h('div', { class: 'stat-value' }, h('span', { id: 'overview-rate', dataset: { value: String(totalRate) }, text: fmt.num(totalRate, 1) })),
          'all versions, last 10 s'),
        stat('Throttles, last minute',
          h('div', { class: `stat-value${throttles.Total ? ' bad' : ''}`, id: 'overview-throttles-total', text: String(throttles.Total) }),
          null,
          h('ul', { class: 'reasons', id: 'overview-throttles', 'aria-label': 'Throttles by reason in the last minute' },
            REASONS.map((r) => h('li', { class: throttles[r] ? 'hot' : null, dataset: { reason: r, count: String(throttles[r]) } },
              h('span', { class: 'reason-name', text: `${r} ` }), h('b', { class: 'count', text: String(throttles[r]) }))))),
        stat('Versions', h('div', { class: 'stat-value', text: `${active}/${functions.length}` }), 'Active / published'),
        stat('Instances', h('div', { class: 'stat-value', text: String(instances.length) }),
          `${instances.reduce((s, i) => s + (i.VCpus || 0), 0)} vCPUs in ${providers.length} capacity provider${providers.length === 1 ? '' : 's'}`),
        st.Host ? stat('Host vCPUs', h('div', { class: 'stat-value', text: `${st.Host.VCpusInUse}/${st.Host.MaxVCpus}` }),
          'virtual vCPUs in use of this machine\u2019s budget') : null),
      h('section', { class: 'panel', 'aria-labelledby': 'h-versions' },
        h('h2', { id: 'h-versions', text: 'Function versions' }),
        table({
          id: 'overview-functions',
          caption: 'Published versions: state, execution environments (ready/desired) per zone, load',
          captionHidden: true,
          head: ['Function', 'Version', 'Capacity provider', 'State', { text: 'Envs', class: 'num' }, 'Per zone (ready/all)',
            { text: 'Inv/s', class: 'num' }, 'CPU', { text: 'Throttles 1 min', class: 'num' }, { text: 'Errors', class: 'num' }],
          rows: functions.map((f, i) => versionRow(f, rates[i], fmt)),
          empty: 'No published versions yet. Create a function and publish it.',
        })),
      unpublishedPanel(listed, functions),
      h('section', { class: 'panel', 'aria-labelledby': 'h-providers' },
        h('h2', { id: 'h-providers', text: 'Capacity providers' }),
        h('div', { id: 'overview-providers', class: 'providers' },
          providers.length ? providers.map((cp) => providerCard(cp, memByInstance, fmt))
            : h('p', { class: 'empty' }, 'No capacity providers yet. ', h('a', { href: '#/new/provider', text: 'Create one' }), '.'))));
    morph(body, fresh);
    const upd = root.querySelector('#overview-updated');
    if (upd) upd.textContent = `Fleet status, live every 2 s · updated ${new Date(now).toLocaleTimeString()}`;
  }, 2000);
}
