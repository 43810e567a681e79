// Capacity provider page (`#/providers/<name>`): its instances and types per zone, utilization,
// MaxVCpuCount headroom, scaling policy and requirements (GetCapacityProvider), the function
// versions on it (ListFunctionVersionsByCapacityProvider), and delete. Polled every 2 s.

import { h, morph, bar, badge, table, hashFor, parseFunctionArn } from '../app.js';

const enc = encodeURIComponent;

/** Tags separated by spaces (so their text reads as a list, not one run-on word). */
function tags(list) {
  return list.flatMap((t, i) => [i ? ' ' : null, h('span', { class: 'tag', text: t })]);
}

function policyView(cfg, fmt) {
  const sc = cfg.CapacityProviderScalingConfig || {};
  const policies = sc.ScalingPolicies || [];
  const req = cfg.InstanceRequirements || {};
  return h('dl', { class: 'kv' },
    h('dt', { text: 'Scaling mode' }), h('dd', { text: sc.ScalingMode || 'Auto' }),
    h('dt', { text: 'MaxVCpuCount' }), h('dd', { text: sc.MaxVCpuCount != null ? String(sc.MaxVCpuCount) : 'not set' }),
    h('dt', { text: 'Scaling policies' }), h('dd', {}, policies.length
      ? h('ul', { class: 'plain' }, policies.map((p) => h('li', {
        text: `${p.PredefinedMetricType || 'metric'} → target ${fmt.num(p.TargetValue)}`,
      })))
      : h('span', { class: 'muted', text: sc.ScalingMode === 'Manual' ? 'none' : 'automatic (no explicit policy)' })),
    h('dt', { text: 'Architectures' }), h('dd', {}, tags(req.Architectures || ['x86_64'])),
    h('dt', { text: 'Allowed instance types' }), h('dd', {}, req.AllowedInstanceTypes?.length
      ? tags(req.AllowedInstanceTypes) : h('span', { class: 'muted', text: 'any' })),
    req.ExcludedInstanceTypes?.length ? [h('dt', { text: 'Excluded instance types' }),
      h('dd', {}, tags(req.ExcludedInstanceTypes))] : null,
    h('dt', { text: 'Subnets' }), h('dd', {}, tags(cfg.VpcConfig?.SubnetIds || [])),
    h('dt', { text: 'Security groups' }), h('dd', {}, tags(cfg.VpcConfig?.SecurityGroupIds || [])),
    h('dt', { text: 'Operator role' }), h('dd', { class: 'mono', text: cfg.PermissionsConfig?.CapacityProviderOperatorRoleArn || '–' }),
    h('dt', { text: 'Last modified' }), h('dd', { text: cfg.LastModified ? fmt.ago(cfg.LastModified) : '–', title: cfg.LastModified || '' }));
}

function memByInstance(functions) {
  const m = new Map();
  for (const f of functions) {
    for (const e of f.Environments || []) m.set(e.InstanceId, (m.get(e.InstanceId) || 0) + (Number(e.MemoryBytes) || 0));
  }
  return m;
}

export async function render(root, params, ctx) {
  const { api, fmt } = ctx;
  const name = params.name;
  const path = `/2025-11-30/capacity-providers/${enc(name)}`;
  let deleting = false;

  const title = h('h1', { id: 'provider-title', text: name });
  const state = h('span', { id: 'provider-state', class: 'badge', text: '…' });
  const del = h('button', { id: 'delete-provider', type: 'button', class: 'btn btn-danger', text: 'Delete capacity provider' });
  const error = h('div', { id: 'provider-page-error', class: 'form-error', role: 'alert' });
  const body = h('div', {}, h('p', { class: 'loading', text: 'Loading…' }));
  root.append(
    h('div', { class: 'page-head' },
      h('div', {},
        h('div', { class: 'crumbs' }, h('a', { href: '#/', text: 'Overview' }), ' / Capacity provider'),
        h('div', { class: 'provider-head' }, title, state)),
      h('div', { class: 'page-actions' },
        h('a', { class: 'btn', href: `#/new/function?provider=${enc(name)}`, text: 'New function here' }), del)),
    error,
    body);

  del.addEventListener('click', () => {
    (async () => {
      const ok = await ctx.confirm(`Delete capacity provider ${name}? Its instances are terminated. A provider that still has function versions cannot be deleted.`,
        { ok: 'Delete', title: 'Delete capacity provider' });
      if (!ok) return;
      del.disabled = true;
      error.textContent = '';
      try {
        await api.call('DELETE', path);
        deleting = true;
        ctx.toast(`Deleting capacity provider ${name}.`, 'success');
        ctx.navigate('#/');
      } catch (e) {
        error.textContent = e.message;
        ctx.toast(e.message, 'error');
      } finally {
        del.disabled = false;
      }
    })().catch(() => {});
  });

  let missing = false;
  ctx.poll(async () => {
    if (missing) return;
    let cfg;
    try {
      cfg = (await api.call('GET', path)).CapacityProvider || {};
    } catch (e) {
      if (e.status === 404) {
        missing = true;
        state.textContent = deleting ? 'Deleted' : 'Not found';
        del.hidden = true;
        morph(body, h('div', {}, h('section', { class: 'empty-state' },
          h('h2', { text: deleting ? 'Deleted' : 'No such capacity provider' }),
          h('p', { text: e.message }),
          h('p', {}, h('a', { class: 'btn', href: '#/', text: 'Back to the overview' })))));
        return;
      }
      throw e;
    }
    const [st, versions] = await Promise.all([
      api.call('GET', '/fleetfn/v1/status'),
      api.call('GET', `${path}/function-versions`).catch((e) => ({ error: e })),
    ]);
    const cp = (st.CapacityProviders || []).find((p) => p.Name === name) || {
      Name: name, State: cfg.State, Instances: [], Zones: cfg.VpcConfig?.SubnetIds || [], VCpus: 0, MemoryMiB: 0,
      AllocatedVCpus: 0, AllocatedMemoryMiB: 0, MaxVCpuCount: cfg.CapacityProviderScalingConfig?.MaxVCpuCount,
    };
    const stateText = cfg.State || cp.State || 'unknown';
    const b = badge(stateText);
    state.className = b.className;
    state.textContent = stateText;

    const instances = cp.Instances || [];
    const mem = memByInstance((st.Functions || []).filter((f) => f.CapacityProvider === name));
    const zones = [...(cp.Zones || [])];
    for (const i of instances) if (!zones.includes(i.Zone)) zones.push(i.Zone);
    const max = Number(cp.MaxVCpuCount ?? cfg.CapacityProviderScalingConfig?.MaxVCpuCount) || 0;
    const used = Number(cp.VCpus) || 0;
    const running = instances.filter((i) => i.State === 'running');
    const meanCpu = running.length ? running.reduce((s, i) => s + (Number(i.CpuUtilization) || 0) * i.VCpus, 0)
      / Math.max(1, running.reduce((s, i) => s + i.VCpus, 0)) : 0;
    const types = new Map();
    for (const i of instances) types.set(i.InstanceType, (types.get(i.InstanceType) || 0) + 1);
    const fv = versions.error ? null : versions.FunctionVersions || [];

    const fresh = h('div', {},
      cp.LaunchError ? h('div', { class: 'alert alert-warn', role: 'status' },
        `Instance launch failing: ${cp.LaunchError.Message}`,
        cp.LaunchError.RetryAt ? ` Next retry ${fmt.ago(cp.LaunchError.RetryAt)}.` : '') : null,
      (cp.CapacityFallbacks || []).length ? h('div', { class: 'alert alert-warn', role: 'status', id: 'provider-fallbacks' },
        `No capacity recently for ${cp.CapacityFallbacks.map((f) => `${f.InstanceType} in ${f.Zone} (${f.Code})`).join(', ')}; launched another type or zone instead.`) : null,
      h('div', { class: 'stats' },
        h('section', { class: 'stat', id: 'provider-headroom', 'aria-label': 'MaxVCpuCount headroom', dataset: { used: String(used), max: String(max) } },
          h('div', { class: 'stat-label', text: 'vCPU headroom' }),
          h('div', { class: 'stat-value', text: max ? `${Math.max(0, max - used)} free` : 'unbounded' }),
          h('div', { class: 'stat-note', text: max ? `${used} of ${max} vCPUs (MaxVCpuCount) in use` : `${used} vCPUs in use, no MaxVCpuCount` }),
          bar(max ? used / max : 0, max ? fmt.pct(used / max) : '–', { big: true })),
        h('section', { class: 'stat', 'aria-label': 'CPU utilization' },
          h('div', { class: 'stat-label', text: 'CPU utilization' }),
          h('div', { class: 'stat-value', text: fmt.pct(meanCpu) }),
          h('div', { class: 'stat-note', text: `mean over ${running.length} running instance${running.length === 1 ? '' : 's'}` }),
          bar(meanCpu, fmt.pct(meanCpu), { big: true })),
        h('section', { class: 'stat', 'aria-label': 'vCPUs allocated' },
          h('div', { class: 'stat-label', text: 'vCPUs allocated' }),
          h('div', { class: 'stat-value', text: `${fmt.num(cp.AllocatedVCpus)} / ${cp.VCpus}` }),
          h('div', { class: 'stat-note', text: 'to execution environments' }),
          bar(cp.VCpus ? cp.AllocatedVCpus / cp.VCpus : 0, fmt.pct(cp.VCpus ? cp.AllocatedVCpus / cp.VCpus : 0), { big: true })),
        h('section', { class: 'stat', 'aria-label': 'Memory allocated' },
          h('div', { class: 'stat-label', text: 'Memory allocated' }),
          h('div', { class: 'stat-value', text: fmt.mib(cp.AllocatedMemoryMiB) }),
          h('div', { class: 'stat-note', text: `of ${fmt.mib(cp.MemoryMiB)} on its instances` }),
          bar(cp.MemoryMiB ? cp.AllocatedMemoryMiB / cp.MemoryMiB : 0, fmt.pct(cp.MemoryMiB ? cp.AllocatedMemoryMiB / cp.MemoryMiB : 0), { big: true }))),
      h('section', { class: 'panel', 'aria-labelledby': 'h-instances' },
        h('h2', { id: 'h-instances' }, 'Instances',
          h('span', { class: 'muted', text: [...types.entries()].map(([t, n]) => `${n} × ${t}`).join(', ') })),
        table({
          id: 'provider-instances',
          caption: `Instances of ${name}: type, zone, state, vCPU, memory and CPU`,
          captionHidden: true,
          head: ['Instance', 'Type', 'Zone', 'State', { text: 'vCPU', class: 'num' }, 'Memory (envs / total)', { text: 'Envs', class: 'num' }, 'CPU', 'Launched'],
          rows: instances.map((i) => {
            const m = (mem.get(i.InstanceId) || 0) / (1024 * 1024);
            return h('tr', { dataset: { instance: i.InstanceId, key: i.InstanceId } },
              h('td', { class: 'mono', text: i.InstanceId }),
              h('td', { class: 'type' }, h('span', { class: 'tag', text: i.InstanceType })),
              h('td', { class: 'zone mono', text: i.Zone }),
              h('td', { class: 'state' }, badge(i.State)),
              h('td', { class: 'vcpu num', text: String(i.VCpus) }),
              h('td', { class: 'memory' }, bar(i.MemoryMiB ? m / i.MemoryMiB : 0, `${fmt.mib(m)} / ${fmt.mib(i.MemoryMiB)}`)),
              h('td', { class: 'num', text: String(i.Environments) }),
              h('td', { class: 'cpu' }, bar(i.CpuUtilization, fmt.pct(i.CpuUtilization))),
              h('td', { class: 'nowrap', title: i.LaunchedAt, text: fmt.ago(i.LaunchedAt) }));
          }),
          empty: st.DataPlane === false ? 'This server runs without a data plane: no instances.' : 'No instances: they launch when a published version needs environments.',
        })),
      h('div', { class: 'grid grid-2' },
        h('section', { class: 'panel', 'aria-labelledby': 'h-zones' },
          h('h2', { id: 'h-zones', text: 'Zones' }),
          table({
            id: 'provider-zones',
            caption: 'Instances and vCPUs per zone',
            captionHidden: true,
            head: ['Zone', { text: 'Instances', class: 'num' }, { text: 'vCPUs', class: 'num' }, 'CPU'],
            rows: zones.map((z) => {
              const here = instances.filter((i) => i.Zone === z);
              const v = here.reduce((s, i) => s + i.VCpus, 0);
              const cpu = v ? here.reduce((s, i) => s + (Number(i.CpuUtilization) || 0) * i.VCpus, 0) / v : 0;
              return h('tr', { dataset: { zone: z, key: `z:${z}` } },
                h('td', { class: 'mono', text: z }),
                h('td', { class: 'num', text: String(here.length) }),
                h('td', { class: 'num', text: String(v) }),
                h('td', {}, bar(cpu, fmt.pct(cpu))));
            }),
            empty: 'No zones.',
          })),
        h('section', { class: 'panel', 'aria-labelledby': 'h-policy' },
          h('h2', { id: 'h-policy', text: 'Scaling and requirements' }),
          h('div', { id: 'provider-policy' }, policyView(cfg, fmt)))),
      h('section', { class: 'panel', 'aria-labelledby': 'h-pversions' },
        h('h2', { id: 'h-pversions', text: 'Function versions on this provider' }),
        fv === null ? h('p', { class: 'alert alert-error', role: 'alert', text: versions.error.message }) : table({
          id: 'provider-versions',
          caption: `Function versions that run on ${name}`,
          captionHidden: true,
          head: ['Function', 'Version', 'State', { text: 'Envs', class: 'num' }],
          rows: fv.map((v) => {
            const { name: fn, version } = parseFunctionArn(v.FunctionArn);
            const s = (st.Functions || []).find((f) => f.FunctionName === fn && f.Version === version);
            const ready = s ? (s.Environments || []).filter((e) => e.State === 'Ready').length : null;
            return h('tr', { dataset: { function: fn, version, key: `${fn}:${version}` } },
              h('td', {}, h('a', { href: hashFor('functions', fn), text: fn })),
              h('td', { class: 'mono', text: version }),
              h('td', { class: 'state' }, badge(v.State)),
              h('td', { class: 'envs num', text: s ? `${ready}/${s.DesiredExecutionEnvironments ?? '–'}` : '–' }));
          }),
          empty: 'No function versions use this capacity provider; it can be deleted.',
        })));
    morph(body, fresh);
  }, 2000);
}
