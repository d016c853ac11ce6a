// The in-patient stay in the card («Стационар»): where the patient lies and who the representative is (all
// staff); at the bedside the doses due now with one tap to mark a dose given, or a reason why not (medical
// roles only); prescriptions and examinations (medical); the discharge request (staff) and the discharge
// documents (finance). Before admission: the arrival date and budget (asked for when the deal reached the
// CRM's «ready to sign» stage), then admission into a bed, also for a deal that has no account yet. The
// server decides who may read what; the panel only hides what would be refused.
import { h, isoToday, newKey } from '../core.js';
import { actionForm } from '../forms.js';

const ROLES = ['manager', 'building_manager', 'nurse', 'doctor'];

function addStyles(doc) {
  const href = new URL('./inpatient.css', import.meta.url).href;
  if (![...doc.querySelectorAll('link[rel=stylesheet]')].some((l) => l.href === href)) {
    doc.head.append(h('link', { rel: 'stylesheet', href }));
  }
}

function row(label, value) {
  return h('div', { class: 'cbp-item-main' }, h('span', { class: 'cbp-muted' }, label), h('span', {}, value));
}

function stayCard(ctx, stay) {
  const { t, fmt } = ctx;
  const rep = stay.representative || {};
  return h('div', { class: 'cbp-form cbp-ip-stay', dataset: { status: stay.status } },
    h('h3', { class: 'cbp-form-title' }, `${stay.building} · ${t('ip_ward')} ${stay.ward} · ${t('ip_bed')} ${stay.bed}`),
    row(t('ip_status'), t(`ip_status_${stay.status}`)),
    row(t('admitted'), fmt.date(stay.admission_date)),
    stay.discharge_date ? row(t('ip_discharge_date'), fmt.date(stay.discharge_date)) : null,
    row(t('ip_representative'), [rep.name, rep.relation ? `(${rep.relation})` : '', rep.phone || ''].filter(Boolean).join(' ')));
}

function dueList(ctx, reload) {
  const { t, fmt } = ctx;
  const box = h('div', { class: 'cbp-ip-due', 'aria-live': 'polite' }, h('p', { class: 'cbp-muted' }, t('loading')));
  let reasons = null;

  async function mark(item, path, body, buttons) {
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await ctx.api.post(`/api/v1/rounds/${encodeURIComponent(item.round_id)}/${path}`, body, item.key);
      ctx.toast(t(path === 'given' ? 'ip_marked_given' : 'ip_marked_not_given', { drug: item.drug }));
      await load();
      reload?.();
    } catch (failure) {
      ctx.toast(ctx.errorText(failure), true);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function askReason(item, li, buttons) {
    reasons = reasons || (await ctx.api.get('/api/v1/rounds/reasons')).reasons;
    const ru = t('ip_lang') !== 'en';
    const picker = h('div', { class: 'cbp-ip-reasons', role: 'group', 'aria-label': t('ip_why_not') },
      reasons.map((reason) => {
        const step = ru ? reason.next_step.title_ru : reason.next_step.title_en;
        const button = h('button', { type: 'button', class: 'cbp-btn cbp-ip-touch', dataset: { reason: reason.code } },
          h('span', {}, ru ? reason.title_ru : reason.title_en), h('span', { class: 'cbp-muted cbp-small' }, ` → ${step}`));
        button.addEventListener('click', () => mark(item, 'not-given', { reason: reason.code }, [...buttons, button]));
        return button;
      }));
    li.append(picker);
    ctx.resized?.();
  }

  function row(item) {
    item.key = item.key || newKey(); // one key per dose shown: a double tap marks it once
    const given = h('button', { type: 'button', class: 'cbp-btn cbp-primary cbp-ip-touch', dataset: { action: 'given' } }, t('ip_given'));
    const notGiven = h('button', { type: 'button', class: 'cbp-btn cbp-ip-touch', dataset: { action: 'not-given' } }, t('ip_not_given'));
    const li = h('li', { class: 'cbp-item cbp-ip-dose', dataset: { round: item.round_id, overdue: String(item.overdue) } },
      h('div', { class: 'cbp-item-main' },
        h('span', {}, h('b', {}, item.drug), ` ${item.dose}`),
        h('span', { class: item.overdue ? 'cbp-badge cbp-ip-overdue' : 'cbp-badge' },
          `${fmt.moment(item.due_at).slice(-5)}${item.overdue ? ` · ${t('ip_overdue')}` : ''}`)),
      h('div', { class: 'cbp-item-actions cbp-ip-actions' }, given, notGiven));
    given.addEventListener('click', () => mark(item, 'given', {}, [given, notGiven]));
    notGiven.addEventListener('click', () => askReason(item, li, [given, notGiven]).catch((f) => ctx.toast(ctx.errorText(f), true)));
    return li;
  }

  async function load() {
    try {
      const data = await ctx.api.get(`/api/v1/rounds/due?deal=${encodeURIComponent(ctx.dealId)}`);
      box.replaceChildren(data.rounds.length
        ? h('ul', { class: 'cbp-simple-list' }, data.rounds.map(row))
        : h('p', { class: 'cbp-muted' }, t('ip_nothing_due')));
    } catch (failure) {
      box.replaceChildren(ctx.failureBox(failure, load));
    }
    ctx.resized?.();
  }
  load();
  return h('section', { class: 'cbp-ip-block' }, h('h3', { class: 'cbp-form-title' }, t('ip_due_now')), box);
}

async function doctorOptions(ctx) {
  const { doctors } = await ctx.api.get('/api/v1/doctors');
  return doctors.map((d) => ({ value: d.user_id, label: d.name }));
}

function formButton(ctx, slot, label, action, build) {
  const button = h('button', { type: 'button', class: 'cbp-btn cbp-action', dataset: { action } }, label);
  button.addEventListener('click', async () => {
    try {
      const spec = await build();
      const form = actionForm(ctx.t, spec, () => { slot.replaceChildren(); ctx.resized?.(); });
      slot.replaceChildren(form);
      form.querySelector('input, select, textarea')?.focus();
    } catch (failure) {
      slot.replaceChildren(ctx.failureBox(failure));
    }
    ctx.resized?.();
  });
  return button;
}

function medicalForms(ctx, slot, done) {
  const { t } = ctx;
  const deal = encodeURIComponent(ctx.dealId);
  const today = isoToday(ctx.session.portal.timezone);
  return [
    formButton(ctx, slot, t('ip_prescribe'), 'prescribe', async () => ({
      id: 'ip-prescribe', title: t('ip_prescribe'), submitLabel: t('ip_prescribe'),
      fields: [
        { name: 'drug', label: t('ip_drug'), required: true, maxLength: 200 },
        { name: 'dose', label: t('ip_dose'), required: true, maxLength: 100 },
        { name: 'times', label: t('ip_times'), required: true, placeholder: '09:00, 21:00' },
        { name: 'start_date', label: t('ip_from'), type: 'date', required: true, value: today },
        { name: 'end_date', label: t('ip_to'), type: 'date' },
        { name: 'doctor_user_id', label: t('ip_doctor'), type: 'select', required: true, options: await doctorOptions(ctx) },
      ],
      fieldMap: { 'times[0]': 'times', 'times[1]': 'times', 'times[2]': 'times' },
      send: (values, key) => ctx.api.post(`/api/v1/deals/${deal}/stay/prescriptions`,
        { ...values, times: values.times.split(/[,\s]+/).filter(Boolean) }, key),
      done: () => done(t('ip_prescribed')),
    })),
    formButton(ctx, slot, t('ip_examination'), 'examination', async () => ({
      id: 'ip-exam', title: t('ip_examination'), submitLabel: t('ip_save'),
      fields: [
        { name: 'kind', label: t('ip_exam_kind'), type: 'select', required: true, value: 'first',
          options: [{ value: 'first', label: t('ip_exam_first') }, { value: 'follow_up', label: t('ip_exam_follow_up') }] },
        { name: 'doctor_user_id', label: t('ip_doctor'), type: 'select', required: true, options: await doctorOptions(ctx) },
        { name: 'examined_on', label: t('ip_exam_date'), type: 'date', required: true, value: today },
        { name: 'results', label: t('ip_results'), type: 'textarea', maxLength: 20000 },
        { name: 'links', label: t('ip_links'), type: 'textarea', placeholder: 'https://…' },
        { name: 'step', label: t('ip_next_step'), maxLength: 2000 },
        { name: 'step_role', label: t('ip_next_step_role'), type: 'select', value: 'doctor',
          options: ROLES.map((r) => ({ value: r, label: t(`ip_role_${r}`) })) },
      ],
      send: (values, key) => ctx.api.post(`/api/v1/deals/${deal}/stay/examinations`, {
        kind: values.kind, doctor_user_id: values.doctor_user_id, examined_on: values.examined_on,
        results: values.results || '',
        links: (values.links || '').split(/\s+/).filter(Boolean),
        next_steps: values.step ? [{ text: values.step, role: values.step_role || 'doctor' }] : [],
      }, key),
      done: () => done(t('ip_examined')),
    })),
  ];
}

function prescriptionsList(ctx) {
  const { t, fmt } = ctx;
  const box = h('div', { class: 'cbp-ip-prescriptions' });
  ctx.api.get(`/api/v1/deals/${encodeURIComponent(ctx.dealId)}/stay/prescriptions`).then((data) => {
    box.replaceChildren(h('ul', { class: 'cbp-simple-list' }, data.prescriptions.map((p) => h('li', {
      class: 'cbp-item', dataset: { prescription: p.id, stopped: String(!!p.stopped_at) },
    }, h('div', { class: 'cbp-item-main' },
      h('span', {}, h('b', {}, p.drug), ` ${p.dose} · ${p.times.join(', ')}`),
      h('span', { class: 'cbp-muted cbp-small' },
        `${fmt.date(p.start_date)}–${p.end_date ? fmt.date(p.end_date) : '…'} · ${p.doctor_name}`))))));
    ctx.resized?.();
  }, (failure) => box.replaceChildren(ctx.failureBox(failure)));
  return box;
}

// Beds free per building for the next week: where a new patient can go.
function occupancyBlock(ctx) {
  const { t, fmt } = ctx;
  const box = h('div', { class: 'cbp-ip-occupancy' }, h('p', { class: 'cbp-muted' }, t('loading')));
  const today = isoToday(ctx.session.portal.timezone);
  ctx.api.get(`/api/v1/buildings/occupancy?date=${today}&days=7`).then((data) => {
    box.replaceChildren(h('ul', { class: 'cbp-simple-list' }, data.buildings.map((b) => h('li', {
      class: 'cbp-item', dataset: { building: b.building_id },
    }, h('div', { class: 'cbp-item-main' },
      h('b', {}, b.name),
      h('span', {}, t('ip_free_of', { free: b.days[0].free, beds: b.beds }))),
    h('div', { class: 'cbp-ip-days' }, b.days.map((d) => h('span', {
      class: d.free ? 'cbp-ip-day' : 'cbp-ip-day cbp-ip-full', title: fmt.date(d.date),
    }, `${fmt.date(d.date).slice(0, 5)} · ${d.free}`)))))));
    ctx.resized?.();
  }, (failure) => box.replaceChildren(ctx.failureBox(failure)));
  return h('section', { class: 'cbp-ip-block' }, h('h3', { class: 'cbp-form-title' }, t('ip_occupancy')), box);
}

// `preferred`: the building the arrival's profile maps to, its wards first and the first of them chosen.
async function admissionSpec(ctx, done, preferred) {
  const { t } = ctx;
  const [{ buildings }, tariffs] = await Promise.all([ctx.api.get('/api/v1/buildings'), ctx.api.get('/api/v1/tariffs')]);
  const ordered = [...buildings].sort((a, b) => (b.id === preferred) - (a.id === preferred));
  const wards = ordered.flatMap((b) => b.wards.map((w) => ({ value: `${b.id}:${w.id}`, label: `${b.name} — ${t('ip_ward')} ${w.name} (${w.beds})` })));
  return {
    id: 'ip-admit', title: t('ip_admit'), submitLabel: t('ip_admit'),
    intro: ctx.stay ? t('ip_admit_existing_account') : null,
    fields: [
      { name: 'ward', label: t('ip_ward'), type: 'select', required: true, options: wards, value: wards[0]?.value },
      { name: 'bed', label: t('ip_bed'), type: 'integer', required: true, min: 1, max: 100 },
      ctx.stay ? null : { name: 'tariff', label: t('f_tariff'), type: 'select', required: true,
        options: tariffs.filter((x) => x.active).map((x) => ({ value: x.id, label: x.name })) },
      { name: 'representative.name', label: t('ip_rep_name'), required: true, maxLength: 200 },
      { name: 'representative.relation', label: t('ip_rep_relation'), maxLength: 64 },
      { name: 'representative.phone', label: t('ip_rep_phone'), maxLength: 32 },
      { name: 'representative.email', label: t('ip_rep_email'), maxLength: 255 },
      { name: 'representative.consent_to_inform', label: t('ip_rep_consent'), type: 'checkbox', value: true },
    ].filter(Boolean),
    fieldMap: { building: 'ward', tariff_id: 'tariff' },
    send: (values, key) => {
      const [building, ward] = values.ward.split(':').map(Number);
      const representative = {};
      for (const [name, value] of Object.entries(values)) {
        if (name.startsWith('representative.')) representative[name.slice(15)] = value;
      }
      const body = { building, ward, bed: values.bed, representative };
      if (values.tariff) body.tariff = Number(values.tariff);
      return ctx.api.post(`/api/v1/deals/${encodeURIComponent(ctx.dealId)}/stay/admission`, body, key);
    },
    done: () => done(t('ip_admitted')),
  };
}

export const inpatientSection = {
  id: 'inpatient',
  title: (t) => t('tab_inpatient'),
  visible: (session) => session.features.stay,
  render(ctx) {
    const { t, session } = ctx;
    const medical = session.roles.includes('medical') || session.roles.includes('admin'); // as has_medical() on the server
    addStyles(document);
    const view = h('div', { class: 'cbp-inpatient' }, h('p', { class: 'cbp-muted' }, t('loading')));
    const slot = h('div', { class: 'cbp-form-slot' });
    const deal = encodeURIComponent(ctx.dealId);

    // Before admission the deal may have no account yet (the panel shows this section alone): the
    // admission opens it, and the whole panel reloads onto its tabs.
    const done = (message) => {
      slot.replaceChildren();
      ctx.toast(message);
      if (!ctx.stay && ctx.reload) ctx.reload(); else load();
    };

    // Not admitted yet: the arrival (date, budget, profile → building) until it is given, then admission.
    async function beforeAdmission() {
      let arrival;
      let buildings = [];
      try {
        [arrival, { buildings }] = await Promise.all([
          ctx.api.get(`/api/v1/deals/${deal}/stay/arrival`), ctx.api.get('/api/v1/buildings')]);
      } catch (failure) {
        if (failure.status !== 403) { view.replaceChildren(ctx.failureBox(failure, load)); return ctx.resized?.(); }
        arrival = null; // a viewer: where beds are free, nothing to fill in
      }
      const admit = formButton(ctx, slot, t('ip_admit'), 'ip-admit', () => admissionSpec(ctx, done, arrival?.arrival?.building_id));
      // A deal whose account is already open (the patient is here) skips the arrival; admission is always
      // offered (a patient may come without an arranged date).
      let first = null;
      if (arrival?.arrival) first = arrivalCard(arrival, buildings);
      else if (arrival && !ctx.stay) first = arrivalForm(arrival, buildings);
      view.replaceChildren(...[h('p', { class: 'cbp-muted' }, t('ip_not_admitted')), first,
        h('div', { class: 'cbp-actions' }, admit), slot, occupancyBlock(ctx)].filter(Boolean));
      return ctx.resized?.();
    }

    // Until the patient is in a bed the arrival can change (the server refuses it after admission).
    function arrivalCard(doc, buildings) {
      const { fmt } = ctx;
      const arrival = doc.arrival;
      const card = h('div', { class: 'cbp-form cbp-ip-arrival' },
        h('h3', { class: 'cbp-form-title' }, t('ip_arrival')),
        row(t('ip_arrival_date'), fmt.date(arrival.arrival_date)),
        arrival.budget ? row(t('ip_budget'), fmt.money(arrival.budget)) : null,
        arrival.building ? row(t('ip_building'), arrival.building) : null);
      const change = h('button', { type: 'button', class: 'cbp-btn cbp-action', dataset: { action: 'ip-arrival-change' } },
        t('ip_arrival_change'));
      change.addEventListener('click', () => {
        card.replaceWith(arrivalForm(doc, buildings, arrival));
        view.querySelector('form[data-form="ip-arrival"] input')?.focus();
        ctx.resized?.();
      });
      card.append(h('div', { class: 'cbp-actions' }, change));
      return card;
    }

    // `given`: the arrival as saved, when changing it (its values filled in, cancel shows it again).
    function arrivalForm(doc, buildings, given) {
      const home = new Map(buildings.flatMap((b) => (b.profiles || []).map((p) => [p, b.name])));
      const form = actionForm(t, {
        id: 'ip-arrival', title: given ? t('ip_arrival_change_title') : t('ip_arrival_title'), submitLabel: t('ip_save'),
        intro: given ? null : (doc.asked_at ? t('ip_arrival_asked') : t('ip_arrival_intro')),
        fields: [
          { name: 'arrival_date', label: t('ip_arrival_date'), type: 'date', required: true, value: given?.arrival_date },
          { name: 'budget', label: t('ip_budget'), type: 'amount', value: given?.budget },
          { name: 'profile', label: t('ip_profile'), type: 'select', emptyLabel: t('ip_profile_none'), value: given?.profile,
            options: [...home.keys()].map((p) => ({ value: p, label: p })) },
        ],
        send: (values, key) => ctx.api.post(`/api/v1/deals/${deal}/stay/arrival`, values, key),
        done: () => { ctx.toast(t(given ? 'ip_arrival_changed' : 'ip_arrival_saved')); load(); },
      }, () => load());
      // The building the profile maps to, shown as soon as a profile is picked.
      const hint = h('p', { class: 'cbp-muted cbp-ip-suggestion', 'aria-live': 'polite' });
      const profile = form.querySelector('select[name=profile]');
      profile.addEventListener('change', () => {
        hint.textContent = home.has(profile.value) ? t('ip_building_suggested', { building: home.get(profile.value) }) : '';
        ctx.resized?.();
      });
      profile.closest('.cbp-field').append(hint);
      return form;
    }

    async function load() {
      let stay;
      try {
        stay = await ctx.api.get(`/api/v1/deals/${deal}/stay/inpatient`);
      } catch (failure) {
        if (failure.status !== 404) { view.replaceChildren(ctx.failureBox(failure, load)); return ctx.resized?.(); }
        return beforeAdmission();
      }
      const current = stay.status !== 'discharged';
      const actions = [];
      if (current && medical) actions.push(...medicalForms(ctx, slot, done));
      if (stay.status === 'admitted') {
        actions.push(formButton(ctx, slot, t('ip_discharge_request'), 'discharge-request', async () => ({
          id: 'ip-discharge', title: t('ip_discharge_request'), submitLabel: t('ip_save'),
          fields: [{ name: 'discharge_date', label: t('ip_discharge_date'), type: 'date', required: true }],
          send: (values, key) => ctx.api.post(`/api/v1/deals/${deal}/stay/discharge-request`, values, key),
          done: () => done(t('ip_discharge_requested')),
        })));
      }
      if (stay.status === 'discharge_requested' && session.features.money) {
        actions.push(formButton(ctx, slot, t('ip_documents_done'), 'documents-done', async () => ({
          id: 'ip-documents', title: t('ip_documents_done'), submitLabel: t('ip_documents_done'),
          fields: [{ name: 'refund_method', label: t('ip_refund_method'), type: 'select',
            options: ['cash', 'card', 'transfer'].map((m) => ({ value: m, label: t(`m_${m}`) })) }],
          send: (values, key) => ctx.api.post(`/api/v1/deals/${deal}/stay/discharge-documents`, values, key),
          done: () => done(t('ip_discharged')),
        })));
      }
      view.replaceChildren(...[
        stayCard(ctx, stay),
        current && medical ? dueList(ctx) : null,
        actions.length ? h('div', { class: 'cbp-actions' }, actions) : null,
        slot,
        medical ? h('section', { class: 'cbp-ip-block' }, h('h3', { class: 'cbp-form-title' }, t('ip_prescriptions')), prescriptionsList(ctx)) : null,
      ].filter(Boolean));
      ctx.resized?.();
    }
    load();
    return view;
  },
};
