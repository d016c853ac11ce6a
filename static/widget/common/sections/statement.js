// The statement: every entry with the running balance, filtered by kind, downloadable as CSV / PDF
// (fetched through the shell's transport, since the CRM's proof travels in a header, not a cookie).
import { download, h } from '../core.js';

const KINDS = ['deposit', 'daily_charge', 'charge', 'purchase', 'reversal', 'refund'];

export const statementSection = {
  id: 'statement',
  title: (t) => t('tab_statement'),
  visible: (session) => session.features.money,
  render(ctx) {
    const { t, fmt } = ctx;
    const base = `/api/v1/deals/${encodeURIComponent(ctx.dealId)}/stay/statement`;
    const body = h('div', { class: 'cbp-statement-body', 'aria-live': 'polite' });
    const filter = h('select', { id: 'cbp-kind', class: 'cbp-input', onchange: () => load() },
      h('option', { value: '' }, t('k_all')), KINDS.map((k) => h('option', { value: k }, t(`k_${k}`))));
    const query = () => (filter.value ? `?kind=${encodeURIComponent(filter.value)}` : '');

    async function load() {
      body.setAttribute('aria-busy', 'true');
      try {
        const data = await ctx.api.get(base + query());
        body.replaceChildren(data.rows.length ? table(data.rows) : h('p', { class: 'cbp-muted' }, t('st_empty')));
      } catch (failure) {
        body.replaceChildren(ctx.failureBox(failure, load));
      } finally {
        body.removeAttribute('aria-busy');
      }
    }

    // Three columns fit 320 px: date above the entry's words, the signed amount, the running balance.
    function table(rows) {
      return h('div', { class: 'cbp-table-wrap', tabindex: 0, role: 'region', 'aria-label': t('tab_statement') },
        h('table', { class: 'cbp-table' },
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, `${t('st_date')} / ${t('st_what')}`),
            h('th', { scope: 'col', class: 'cbp-num' }, t('st_amount')),
            h('th', { scope: 'col', class: 'cbp-num' }, t('st_balance')))),
          h('tbody', {}, rows.map((r) => {
            const credit = Number(r.credit) > 0;
            return h('tr', { dataset: { kind: r.kind } },
              h('td', {}, h('span', { class: 'cbp-small-date' }, fmt.date(r.date)), h('br'),
                r.description || t(`k_${r.kind}`)),
              h('td', { class: `cbp-num ${credit ? 'cbp-in' : 'cbp-out'}` },
                `${credit ? '+' : '−'}${fmt.money(credit ? r.credit : r.debit)}`),
              h('td', { class: `cbp-num${String(r.balance).startsWith('-') ? ' cbp-debt' : ''}` }, fmt.money(r.balance)));
          }))));
    }

    async function fetchFile(ext, button) {
      button.disabled = true;
      try {
        download(await ctx.api.blob(`${base}.${ext}${query()}`), `statement-deal-${ctx.dealId}.${ext}`);
        ctx.toast('');
      } catch (failure) {
        ctx.toast(ctx.errorText(failure), true);
      } finally {
        button.disabled = false;
      }
    }

    const csv = h('button', { type: 'button', class: 'cbp-btn', onclick: () => fetchFile('csv', csv) }, t('download_csv'));
    const pdf = h('button', { type: 'button', class: 'cbp-btn', onclick: () => fetchFile('pdf', pdf) }, t('download_pdf'));
    load();
    return h('div', { class: 'cbp-statement' },
      h('div', { class: 'cbp-toolbar' },
        h('label', { for: 'cbp-kind', class: 'cbp-label' }, t('f_kind')), filter, csv, pdf),
      body);
  },
};
