// Admin settings screen: one versioned document (GET/PUT /api/v1/settings), pickers filled from the CRM's
// real fields, pipelines and users (GET /api/v1/settings/catalogue, through CrmClient on the server),
// the tariff and article catalogues, and the history of who changed what. Reachable as a panel tab
// and mounted on its own in the CRM's settings area (mountSettings in ../panel.js).
import { h, newKey } from '../core.js';
import { actionForm } from '../forms.js';

const STAGES = ['admission', 'in_stay', 'discharge', 'ready_to_sign'];
const PIPELINES = ['ledger', 'invoices', 'distribution'];
const FIELDS = ['balance', 'daily_rate', 'paid_through'];

function settingsSpec(ctx, doc, catalogue, done) {
  const { t } = ctx;
  const s = doc.settings;
  const stageOptions = catalogue.pipelines.flatMap((p) => p.stages.map((st) => ({
    value: `${p.id}|${st.id}`, label: `${p.name} → ${st.name}`,
  })));
  const stageValue = (ref) => (ref ? `${ref.pipeline_id}|${ref.stage_id}` : '');
  const fields = [
    { type: 'heading', name: 'h-general', label: t('s_general') },
    { name: 'timezone', label: t('s_timezone'), type: 'select', required: true, value: s.timezone,
      options: catalogue.timezones.map((z) => ({ value: z, label: z })) },
    { name: 'currency', label: t('s_currency'), type: 'select', required: true, value: s.currency,
      options: catalogue.currencies.map((c) => ({ value: c, label: c })) },
    { name: 'locale', label: t('s_locale'), type: 'select', required: true, value: s.locale,
      options: [{ value: 'ru_RU', label: 'Русский (12 300,00 ₽)' }, { value: 'en_US', label: 'English (RUB 12,300.00)' }] },
    { type: 'heading', name: 'h-ledger', label: t('s_ledger') },
    { name: 'ledger.overdraft', label: t('s_overdraft'), type: 'amount', allowZero: true, required: true, value: s.ledger.overdraft },
    { name: 'ledger.purchase_threshold', label: t('s_threshold'), type: 'amount', allowZero: true, required: true, value: s.ledger.purchase_threshold },
    { name: 'ledger.purchase_hold_hours', label: t('s_hold_hours'), type: 'integer', min: 1, max: 720, required: true, value: s.ledger.purchase_hold_hours },
    { name: 'ledger.low_balance_days', label: t('s_low_days'), type: 'integer', min: 0, max: 60, required: true, value: s.ledger.low_balance_days },
    { name: 'ledger.charge_discharge_day', label: t('s_discharge_day'), type: 'checkbox', value: s.ledger.charge_discharge_day },
    { type: 'heading', name: 'h-fields', label: t('s_fields') },
    ...FIELDS.map((key) => ({
      name: `deal_fields.${key}`, label: t(`s_field_${key}`), type: 'select', value: s.deal_fields[key] || '', emptyLabel: t('s_not_mirrored'),
      options: catalogue.deal_fields.map((f) => ({ value: f.id, label: f.name === f.id ? f.id : `${f.name} (${f.id})` })),
    })),
    { type: 'heading', name: 'h-stages', label: t('s_stages') },
    ...STAGES.map((key) => ({
      name: `stages.${key}`, label: t(`s_stage_${key}`), type: 'select', value: stageValue(s.stages[key]), options: stageOptions,
      emptyLabel: t('s_not_used'),
    })),
    { type: 'heading', name: 'h-pipelines', label: t('s_pipelines') },
    ...PIPELINES.map((key) => ({
      name: `pipelines.${key}`, label: t(`s_pipeline_${key}`), type: 'select', value: s.pipelines[key] || '',
      emptyLabel: t('s_not_used'),
      options: catalogue.pipelines.map((p) => ({ value: p.id, label: p.name })),
    })),
    { type: 'heading', name: 'h-roles', label: t('s_roles') },
    ...catalogue.users.map((u) => {
      const roles = s.roles[u.id] || [];
      // One role per user: roles are cumulative (admin ⊃ finance ⊃ staff ⊃ viewer), so the highest is kept.
      const top = [...catalogue.roles].reverse().find((r) => roles.includes(r)) || '';
      return { name: `roles.${u.id}`, label: u.name, type: 'select', value: top, emptyLabel: t('s_no_role'),
        options: catalogue.roles.map((r) => ({ value: r, label: t(`r_${r}`) })) };
    }),
  ];
  return {
    id: 'settings', title: t('tab_settings'), submitLabel: t('s_save'), fields,
    send(values, key) {
      const body = { version: doc.version, ledger: {}, deal_fields: {}, stages: {}, pipelines: {}, roles: {} };
      for (const f of fields) {
        if (f.type === 'heading') continue;
        const value = values[f.name];
        const [group, name] = f.name.includes('.') ? f.name.split(/\.(.+)/) : [null, f.name];
        if (!group) body[name] = value;
        else if (group === 'stages') body.stages[name] = value ? { pipeline_id: value.split('|')[0], stage_id: value.split('|')[1] } : null;
        else if (group === 'roles') body.roles[name] = value ? [value] : [];
        else if (group === 'ledger') body.ledger[name] = value === undefined ? (f.type === 'checkbox' ? false : value) : value;
        else body[group][name] = value || null;
      }
      return ctx.api.put('/api/v1/settings', body, key);
    },
    done,
  };
}

function catalogueList(ctx, what, labelOf) {
  const { t } = ctx;
  const list = h('ul', { class: 'cbp-simple-list', dataset: { catalogue: what } });
  const slot = h('div');
  async function load() {
    try {
      const rows = await ctx.api.get(`/api/v1/${what}`);
      list.replaceChildren(...rows.map((r) => h('li', {}, labelOf(r))));
    } catch (failure) {
      list.replaceChildren(ctx.failureBox(failure, load));
    }
  }
  const spec = what === 'tariffs'
    ? { id: 'tariff-new', title: t('s_add_tariff'), submitLabel: t('s_add_tariff'),
      fields: [{ name: 'name', label: t('f_name'), type: 'text', required: true, maxLength: 200 },
        { name: 'daily_rate', label: t('f_daily_rate'), type: 'amount', required: true, allowZero: true }] }
    : { id: 'article-new', title: t('s_add_article'), submitLabel: t('s_add_article'),
      fields: [{ name: 'name', label: t('f_name'), type: 'text', required: true, maxLength: 200 },
        { name: 'code', label: t('f_code'), type: 'text', maxLength: 32 }] };
  const open = () => slot.replaceChildren(actionForm(t, {
    ...spec,
    send: (values, key) => ctx.api.post(`/api/v1/${what}`, values, key),
    done: () => { slot.replaceChildren(); ctx.cache[what] = null; load(); },
  }, () => slot.replaceChildren()));
  load();
  return h('div', { class: 'cbp-catalogue' },
    h('h4', { class: 'cbp-form-heading' }, t(`s_${what}`)), list,
    h('button', { type: 'button', class: 'cbp-btn', dataset: { add: what }, onclick: open }, t(what === 'tariffs' ? 's_add_tariff' : 's_add_article')),
    slot);
}

async function offline(doc, api) {
  const s = doc.settings;
  const users = await api.get('/api/v1/users').catch(() => []);
  const pipelines = new Map();
  for (const ref of Object.values(s.stages).filter(Boolean)) {
    const p = pipelines.get(ref.pipeline_id) || { id: ref.pipeline_id, name: ref.pipeline_id, stages: [] };
    p.stages.push({ id: ref.stage_id, name: ref.stage_id });
    pipelines.set(ref.pipeline_id, p);
  }
  for (const id of Object.values(s.pipelines).filter(Boolean)) {
    if (!pipelines.has(id)) pipelines.set(id, { id, name: id, stages: [] });
  }
  return {
    supported: { deal_fields: false, pipelines: false },
    deal_fields: [...new Set(Object.values(s.deal_fields).filter(Boolean))].map((id) => ({ id, name: id })),
    pipelines: [...pipelines.values()],
    users: users.filter((u) => u.active).map((u) => ({ id: u.crm_user_id, name: u.name })),
    timezones: [s.timezone, ...(Intl.supportedValuesOf?.('timeZone') || [])].filter((z, i, all) => all.indexOf(z) === i),
    currencies: [s.currency],
    roles: ['viewer', 'staff', 'supervisor', 'finance', 'admin'],
  };
}

export function renderSettings(ctx) {
  const { t } = ctx;
  const view = h('div', { class: 'cbp-settings', 'aria-busy': 'true' }, h('p', { class: 'cbp-muted' }, t('loading')));
  async function load(message) {
    try {
      const [doc, fetched, history] = await Promise.all([
        ctx.api.get('/api/v1/settings'),
        ctx.api.get('/api/v1/settings/catalogue').catch((failure) => ({ failure })),
        ctx.api.get('/api/v1/settings/history'),
      ]);
      // The CRM down must not lock the admin out: the CRM's lists shrink to what is set now, so the
      // rest (ledger, time zone, roles) can still be changed, and the screen says why with a retry.
      const catalogue = fetched.failure ? await offline(doc, ctx.api) : fetched;
      const spec = settingsSpec(ctx, doc, catalogue, (saved) => load(t('s_saved', { version: saved.version })));
      const form = actionForm(t, spec, () => load());
      if (message) ctx.toast(message);
      view.replaceChildren(...[
        fetched.failure ? h('div', { class: 'cbp-warn cbp-crm-down', role: 'alert' },
          h('p', { class: 'cbp-muted' }, `${t('s_crm_down')} ${ctx.errorText(fetched.failure)}`),
          h('button', { type: 'button', class: 'cbp-btn cbp-retry', onclick: () => load() }, t('retry'))) : null,
        !fetched.failure && (!catalogue.supported.deal_fields || !catalogue.supported.pipelines)
          ? h('p', { class: 'cbp-warn' }, t('s_unsupported')) : null,
        form,
        h('section', { class: 'cbp-list' }, h('h3', { class: 'cbp-h' }, t('s_catalogues')),
          catalogueList(ctx, 'tariffs', (r) => (r.daily_rate ? `${r.name} · ${ctx.fmt.money(r.daily_rate)}` : r.name)),
          catalogueList(ctx, 'articles', (r) => (r.code ? `${r.name} (${r.code})` : r.name))),
        h('section', { class: 'cbp-list cbp-history' }, h('h3', { class: 'cbp-h' }, t('s_history')),
          history.length ? h('ul', { class: 'cbp-simple-list' }, history.map((v) => h('li', {},
            h('b', {}, t('s_version', { version: v.version, who: v.changed_by, when: ctx.fmt.moment(v.changed_at) })),
            h('ul', {}, Object.entries(v.changes).map(([path, c]) => h('li', { class: 'cbp-small' },
              `${path}: ${JSON.stringify(c.from)} → ${JSON.stringify(c.to)}`))))))
            : h('p', { class: 'cbp-muted' }, t('log_empty'))),
      ].filter(Boolean));
    } catch (failure) {
      view.replaceChildren(ctx.failureBox(failure, () => load()));
    } finally {
      view.removeAttribute('aria-busy');
      ctx.resized?.();
    }
  }
  load();
  return view;
}

export function renderLog(ctx) {
  const { t, fmt } = ctx;
  const outbox = h('div', { class: 'cbp-outbox' }, t('loading'));
  const inbox = h('div', { class: 'cbp-inbox' }, t('loading'));
  async function load() {
    try {
      const [failed, events] = await Promise.all([
        ctx.api.get('/api/v1/outbox?state=failed&limit=50'), ctx.api.get('/api/v1/inbox?limit=30'),
      ]);
      outbox.replaceChildren(failed.length ? h('ul', { class: 'cbp-simple-list' }, failed.map((job) => {
        const retry = h('button', { type: 'button', class: 'cbp-btn cbp-small-btn', dataset: { job: job.id } }, t('log_retry'));
        const key = newKey();
        retry.addEventListener('click', async () => {
          retry.disabled = true;
          try {
            await ctx.api.post(`/api/v1/outbox/${job.id}/retry`, {}, key);
            ctx.toast(t('log_retried'));
            load();
          } catch (failure) {
            ctx.toast(ctx.errorText(failure), true);
            retry.disabled = false;
          }
        });
        return h('li', { class: 'cbp-item', dataset: { outbox: job.id } },
          h('div', { class: 'cbp-item-main' }, h('span', {}, `${job.operation}${job.deal_id ? ` · #${job.deal_id}` : ''} · ${fmt.moment(job.created_at)}`)),
          h('p', { class: 'cbp-error cbp-small' }, job.last_error || ''), retry);
      })) : h('p', { class: 'cbp-muted' }, t('log_empty')));
      inbox.replaceChildren(events.length ? h('ul', { class: 'cbp-simple-list' }, events.map((e) => h('li', { class: 'cbp-item', dataset: { inbox: e.id, outcome: e.outcome } },
        h('div', { class: 'cbp-item-main' }, h('span', {}, `${fmt.moment(e.received_at)} · ${e.source} · ${e.event_type || '—'}`),
          h('b', { class: e.outcome === 'failed' ? 'cbp-debt' : null }, t(`o_${e.outcome}`))),
        e.error ? h('p', { class: 'cbp-error cbp-small' }, e.error) : null))) : h('p', { class: 'cbp-muted' }, t('log_empty')));
    } catch (failure) {
      outbox.replaceChildren(ctx.failureBox(failure, load));
      inbox.replaceChildren();
    }
    ctx.resized?.();
  }
  load();
  return h('div', { class: 'cbp-log' },
    h('h3', { class: 'cbp-h' }, t('log_outbox')), outbox,
    h('h3', { class: 'cbp-h' }, t('log_inbox')), inbox);
}

export const settingsSection = {
  id: 'settings',
  title: (t) => t('tab_settings'),
  visible: (session) => session.features.settings,
  render: renderSettings,
};

export const logSection = {
  id: 'log',
  title: (t) => t('tab_log'),
  visible: (session) => session.features.settings,
  render: renderLog,
};
