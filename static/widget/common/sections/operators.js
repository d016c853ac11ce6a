// Lead distribution in the card (the distribution back-end): the operators' board (status, open deals,
// the queue), the user's own working-day buttons, and "distribute this deal" with who got it. Supervisors
// may set anyone's status; operators only their own (the API enforces both).
import { h, newKey } from '../core.js';

const STATES = ['on_shift', 'paused', 'off'];

export const operatorsSection = {
  id: 'operators',
  title: (t) => t('tab_operators'),
  visible: (session) => session.features.stay,
  render(ctx) {
    const { t, session } = ctx;
    const me = session.user?.crm_user_id;
    const supervisor = session.roles.includes('supervisor') || session.roles.includes('admin');
    const board = h('div', { class: 'cbp-operators', 'aria-live': 'polite' }, h('p', { class: 'cbp-muted' }, t('loading')));
    const result = h('p', { class: 'cbp-assign-result', role: 'status' });
    const label = (prefix, value) => {
      const text = t(`${prefix}_${value}`);
      return text === `${prefix}_${value}` ? value : text;
    };

    async function setStatus(operator, state, button) {
      button.disabled = true;
      try {
        await ctx.api.post(`/api/v1/distribution/operators/${operator.id}/status`,
          state === 'paused' ? { state, minutes: 15 } : { state }, newKey());
        await load();
      } catch (failure) {
        ctx.toast(ctx.errorText(failure), true);
        button.disabled = false;
      }
    }

    function row(operator) {
      const mine = operator.crm_user_id === me;
      const buttons = (mine || supervisor) ? STATES.filter((s) => s !== operator.status).map((state) => {
        const button = h('button', { type: 'button', class: 'cbp-btn cbp-small-btn', dataset: { state } },
          t(`op_set_${state}`));
        button.addEventListener('click', () => setStatus(operator, state, button));
        return button;
      }) : [];
      return h('li', { class: 'cbp-item', dataset: { operator: operator.id, status: operator.status } },
        h('div', { class: 'cbp-item-main' },
          h('span', {}, mine ? h('b', {}, operator.name) : operator.name),
          h('span', { class: `cbp-badge cbp-op-${operator.status}` }, label('os', operator.status))),
        h('div', { class: 'cbp-item-main cbp-small' },
          h('span', { class: 'cbp-muted' }, t('op_load', { n: operator.load }))),
        buttons.length ? h('div', { class: 'cbp-item-actions' }, buttons) : null);
    }

    async function load() {
      try {
        const data = await ctx.api.get('/api/v1/distribution/operators');
        const queued = Object.entries(data.queue || {});
        board.replaceChildren(...[
          h('ul', { class: 'cbp-simple-list' }, data.operators.map(row)),
          queued.length ? h('p', { class: 'cbp-muted cbp-small' },
            `${t('op_queue')}: ${queued.map(([pool, n]) => `${pool} — ${n}`).join(', ')}`) : null,
        ].filter(Boolean));
      } catch (failure) {
        board.replaceChildren(ctx.failureBox(failure, load));
      }
      ctx.resized?.();
    }

    const key = newKey(); // one distribution request per opened section: a double click assigns once
    const assign = h('button', { type: 'button', class: 'cbp-btn cbp-primary', dataset: { action: 'assign' } }, t('op_assign'));
    assign.addEventListener('click', async () => {
      assign.disabled = true;
      try {
        const answer = await ctx.api.post(`/api/v1/deals/${encodeURIComponent(ctx.dealId)}/assign`, {}, key);
        const operators = await ctx.api.get('/api/v1/distribution/operators');
        const who = operators.operators.find((o) => o.id === answer.user_id);
        if (answer.state === 'queued') result.textContent = t('op_queued');
        else if (answer.user_id == null) result.textContent = t('op_unmatched', { reason: answer.decision?.reason || answer.state });
        else result.textContent = t('op_assigned', { name: who ? who.name : answer.user_id });
        board.replaceChildren(h('ul', { class: 'cbp-simple-list' }, operators.operators.map(row)));
      } catch (failure) {
        result.textContent = ctx.errorText(failure);
      } finally {
        assign.disabled = false;
      }
    });
    load();
    return h('div', { class: 'cbp-distribution' }, h('div', { class: 'cbp-toolbar' }, assign), result, board);
  },
};
