// Cost page (`#/cost`): what the capacity cost here against AWS Lambda and AWS Lambda Managed
// Instances for the same traffic, per capacity provider, with the break-even request rate, over
// a chosen window (`GET /fleetfn/v1/cost?Since=1h|24h|7d`). Refreshed every 10 s.

import { h, morph, table } from '../app.js';

const WINDOWS = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days']];
const REFRESH_MS = 10000;

function costBars(c, fmt) {
  const max = Math.max(c.FleetfnUsd, c.AwsLambdaUsd, c.AwsLmiUsd, 1e-12);
  const row = (label, v, cls) => {
    const fill = h('div', { class: `bar-fill ${cls}` });
    fill.style.width = `${((v / max) * 100).toFixed(1)}%`;
    return h('div', { class: 'cost-bar' },
      h('span', { text: label }),
      h('div', { class: 'bar-track', role: 'meter', 'aria-label': `${label} ${fmt.usd(v)}`, 'aria-valuemin': '0', 'aria-valuemax': String(max), 'aria-valuenow': String(v) }, fill),
      h('span', { class: 'num', text: fmt.usd(v) }));
  };
  return h('div', { class: 'cost-bars' },
    row('Here', c.FleetfnUsd, 'here'), row('AWS Lambda', c.AwsLambdaUsd, 'lambda'), row('AWS LMI', c.AwsLmiUsd, 'lmi'));
}

function cheapest(c) {
  const all = [['Here', c.FleetfnUsd], ['AWS Lambda', c.AwsLambdaUsd], ['AWS LMI', c.AwsLmiUsd]];
  return all.reduce((a, b) => (b[1] < a[1] ? b : a))[0];
}

export async function render(root, params, ctx) {
  const { api, fmt } = ctx;
  const select = h('select', { id: 'cost-window', name: 'Since' },
    WINDOWS.map(([v, label]) => h('option', { value: v, text: label })));
  // The window is in the address (`#/cost?Since=7d`), so a reload or a shared link keeps it.
  select.value = WINDOWS.some(([v]) => v === params?.Since) ? params.Since : '24h';
  const body = h('div', {}, h('p', { class: 'loading', text: 'Loading costs…' }));
  const sub = h('p', { class: 'sub', text: 'Here vs AWS Lambda vs AWS Lambda Managed Instances for the same traffic' });
  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { text: 'Cost' }), sub),
      h('div', { class: 'page-actions field-inline' },
        h('label', { for: 'cost-window', text: 'Window' }), select)),
    body);

  let last = 0;
  let seq = 0;
  async function load() {
    const mine = ++seq;
    const since = select.value;
    const doc = await api.call('GET', '/fleetfn/v1/cost', { query: { Since: since } });
    if (mine !== seq) return;
    last = Date.now();
    const providers = doc.CapacityProviders || [];
    const t = doc.Total || { FleetfnUsd: 0, AwsLambdaUsd: 0, AwsLmiUsd: 0 };
    const perMonth = doc.WindowSeconds > 0 ? (30 * 86400) / doc.WindowSeconds : 0;
    sub.textContent = `${fmt.dur(doc.WindowSeconds || 0)} from ${new Date(doc.Since?.replace(/([+-]\d\d)(\d\d)$/, '$1:$2') || Date.now()).toLocaleString()} · instance prices as of ${doc.InstancePricesAsOf}, Lambda prices as of ${doc.LambdaPrices?.AsOf || '–'}`;
    const best = cheapest(t);
    const stat = (label, v, note) => h('section', { class: 'stat', 'aria-label': label },
      h('div', { class: 'stat-label', text: label }),
      h('div', { class: `stat-value${label.startsWith(best) && providers.length ? ' winner' : ''}`, text: fmt.usd(v) }),
      h('div', { class: 'stat-note', text: perMonth ? `≈ ${fmt.usd(v * perMonth)} per 30 days at this rate` : note }));
    const fresh = h('div', {},
      h('div', { class: 'stats' },
        stat('Here (fleetfn)', t.FleetfnUsd, t.DiscountUsd > 0
          ? `instances at discounted prices: ${fmt.usd(t.OnDemandUsd)} on-demand − ${fmt.usd(t.DiscountUsd)} saved`
          : 'instances at on-demand prices'),
        stat('AWS Lambda', t.AwsLambdaUsd, 'GB-seconds + requests'),
        stat('AWS LMI', t.AwsLmiUsd, 'instances + management fee (on on-demand) + requests')),
      doc.UnpricedInstanceTypes?.length ? h('p', { class: 'muted', id: 'cost-unpriced', text: `No price for ${doc.UnpricedInstanceTypes.join(', ')} (counted as $0): set one under "Prices" in the --catalog file of fleetfn serve.` }) : null,
      h('section', { class: 'panel', 'aria-labelledby': 'h-cost' },
        h('h2', { id: 'h-cost', text: 'Per capacity provider' }),
        table({
          id: 'cost-table',
          caption: 'Cost per capacity provider: here, on AWS Lambda and on AWS Lambda Managed Instances',
          captionHidden: true,
          head: ['Capacity provider', { text: 'Instance hours', class: 'num' }, { text: 'Requests', class: 'num' },
            { text: 'GB-seconds', class: 'num' }, { text: 'Here', class: 'num' }, { text: 'AWS Lambda', class: 'num' },
            { text: 'AWS LMI', class: 'num' }, { text: 'Req/s', class: 'num' }, { text: 'Break-even req/s', class: 'num' }],
          rows: providers.map((p) => h('tr', { dataset: { provider: p.Name, key: p.Name } },
            h('td', {}, h('a', { href: `#/providers/${encodeURIComponent(p.Name)}`, text: p.Name })),
            h('td', { class: 'num', text: fmt.num(p.InstanceHours, 2) }),
            h('td', { class: 'num', text: fmt.num(p.Requests) }),
            h('td', { class: 'num', text: fmt.num(p.GbSeconds, 1) }),
            h('td', { class: 'num here', text: fmt.usd(p.Cost.FleetfnUsd) }),
            h('td', { class: 'num lambda', text: fmt.usd(p.Cost.AwsLambdaUsd) }),
            h('td', { class: 'num lmi', text: fmt.usd(p.Cost.AwsLmiUsd) }),
            h('td', { class: 'num', text: fmt.num(p.ObservedRequestsPerSecond, 2) }),
            h('td', { class: 'num breakeven', text: p.BreakEvenRequestsPerSecond == null ? '–' : fmt.num(p.BreakEvenRequestsPerSecond, 1) }))),
          empty: 'No capacity providers ran in this window.',
          foot: providers.length > 1 ? h('tfoot', {}, h('tr', {},
            h('td', { text: 'Total' }), h('td', {}), h('td', {}), h('td', {}),
            h('td', { class: 'num', text: fmt.usd(t.FleetfnUsd) }),
            h('td', { class: 'num', text: fmt.usd(t.AwsLambdaUsd) }),
            h('td', { class: 'num', text: fmt.usd(t.AwsLmiUsd) }),
            h('td', {}), h('td', {}))) : null,
        })),
      h('section', { class: 'panel', 'aria-labelledby': 'h-breakeven' },
        h('h2', { id: 'h-breakeven', text: 'Break-even' }),
        h('div', { id: 'cost-breakeven' }, providers.length ? providers.map((p) => {
          const be = p.BreakEvenRequestsPerSecond;
          return h('div', { class: 'breakeven-item', dataset: { provider: p.Name, key: `be:${p.Name}` } },
            h('h3', { text: p.Name }),
            h('p', { class: 'verdict', text: p.Verdict }),
            be != null ? h('p', { class: 'muted', text: `Observed ${fmt.num(p.ObservedRequestsPerSecond, 2)} req/s; above ${fmt.num(be, 1)} req/s this capacity costs less than AWS Lambda for the same traffic.` }) : null,
            costBars(p.Cost, fmt),
            p.Instances?.length ? h('details', { class: 'instance-lines' },
              h('summary', { text: `${p.Instances.length} instance line${p.Instances.length === 1 ? '' : 's'}` }),
              table({
                caption: `Instances of ${p.Name} in this window`,
                captionHidden: true,
                head: ['Type', 'Zone', { text: 'Hours', class: 'num' }, { text: 'Hourly', class: 'num' }, { text: 'Cost', class: 'num' }],
                rows: p.Instances.map((i, n) => h('tr', { dataset: { key: `${n}` } },
                  h('td', {}, h('span', { class: 'tag', text: i.InstanceType })),
                  h('td', { class: 'mono', text: i.Zone }),
                  h('td', { class: 'num', text: fmt.num(i.Hours, 3) }),
                  h('td', { class: 'num', text: (i.HourlyUsd == null ? 'no price' : `$${i.HourlyUsd}`) + (i.Discount ? ` (${i.Discount.Kind === 'SavingsPlan' ? 'Savings Plan' : 'Reserved Instance'} −${fmt.pct(i.Discount.Rate)})` : '') }),
                  h('td', { class: 'num', text: fmt.usd(i.CostUsd) }))),
              })) : null);
        }) : h('p', { class: 'empty', text: 'Nothing ran in this window, so there is nothing to compare yet.' }))),
      h('p', { class: 'muted small', text: `Lambda prices: $${doc.LambdaPrices?.X86GbSecond} per GB-s (x86), $${doc.LambdaPrices?.ArmGbSecond} (arm64), $${doc.LambdaPrices?.PerMillionRequests} per million requests; LMI management fee ${fmt.pct(doc.LambdaPrices?.LmiManagementFee)} of the on-demand instance price, discounts or not.` }));
    // Keep an opened <details> open across refreshes.
    const open = new Set([...body.querySelectorAll('details[open]')].map((d) => d.closest('[data-key]')?.dataset.key));
    morph(body, fresh);
    for (const d of body.querySelectorAll('details')) if (open.has(d.closest('[data-key]')?.dataset.key)) d.open = true;
  }

  select.addEventListener('change', () => {
    history.replaceState(null, '', `#/cost?Since=${select.value}`);
    load().catch((e) => ctx.toast(e.message, 'error'));
  });
  ctx.poll(async () => {
    if (Date.now() - last < REFRESH_MS - 100) return;
    await load();
  }, 2000);
}
