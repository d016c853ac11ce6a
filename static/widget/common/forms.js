// Short action forms: checked in the browser before submit, the server's field errors shown beside the
// field they name, and one Idempotency-Key per form instance so a double tap or a retry after a network
// error replays the first request instead of posting twice.
import { ApiFailure, errorText, h, newKey } from './core.js';

const AMOUNT = /^\d{1,16}(\.\d{1,2})?$/;

export function normaliseAmount(raw) {
  return String(raw || '').replace(/[\s\u00a0\u202f]/g, '').replace(',', '.');
}

function checkField(t, field, raw) {
  const value = typeof raw === 'string' ? raw.trim() : raw;
  if (field.type === 'checkbox' || field.type === 'heading') return null;
  if (value === '' || value == null) return field.required ? t('v_required') : null;
  if (field.type === 'amount') {
    const amount = normaliseAmount(value);
    if (!AMOUNT.test(amount)) return t('v_amount');
    if (Number(amount) <= 0 && !field.allowZero) return t('v_positive');
  }
  if (field.type === 'integer') {
    if (!/^\d+$/.test(value)) return t('v_integer');
    if (field.min != null && Number(value) < field.min) return t('v_min', { min: field.min });
    if (field.max != null && Number(value) > field.max) return t('v_max', { max: field.max });
  }
  if (field.maxLength && value.length > field.maxLength) return t('v_too_long', { max: field.maxLength });
  return null;
}

function readValue(field, input) {
  if (field.type === 'checkbox') return input.checked;
  if (field.type === 'amount') return normaliseAmount(input.value);
  if (field.type === 'datetime') return input.value ? new Date(input.value).toISOString() : '';
  if (field.type === 'integer') return input.value.trim() === '' ? '' : Number(input.value);
  return input.value.trim();
}

function control(field, id, errorId) {
  const common = {
    id, name: field.name, 'aria-describedby': errorId, required: field.required || null,
    class: 'cbp-input',
  };
  if (field.type === 'select') {
    return h('select', common,
      field.required ? null : h('option', { value: '' }, field.emptyLabel || '—'),
      (field.options || []).map((o) => h('option', { value: o.value, selected: String(o.value) === String(field.value ?? '') }, o.label)));
  }
  if (field.type === 'textarea') return h('textarea', { ...common, rows: 2 }, field.value ?? '');
  if (field.type === 'checkbox') {
    return h('input', { ...common, type: 'checkbox', class: 'cbp-check', checked: !!field.value });
  }
  const type = { amount: 'text', date: 'date', datetime: 'datetime-local', integer: 'text' }[field.type] || 'text';
  const inputmode = { amount: 'decimal', integer: 'numeric' }[field.type] || null;
  return h('input', {
    ...common, type, value: field.value ?? '', inputmode,
    autocomplete: 'off', placeholder: field.placeholder,
  });
}

/**
 * spec: {id, title, fields: [{name, label, type, required, options, value}], submitLabel, danger,
 *        send(values, key) -> Promise<response>, done(response)}
 */
export function actionForm(t, spec, onCancel) {
  let key = newKey();
  const inputs = new Map();
  const errors = new Map();
  let busy = false;

  const formError = h('div', { class: 'cbp-form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: `cbp-btn cbp-primary${spec.danger ? ' cbp-danger' : ''}` },
    spec.submitLabel);
  const rows = spec.fields.map((field) => {
    if (field.type === 'heading') return h('h4', { class: 'cbp-form-heading' }, field.label);
    const id = `cbp-${spec.id}-${field.name.replace(/\W/g, '-')}`;
    const errorId = `${id}-error`;
    const input = control(field, id, errorId);
    const error = h('div', { class: 'cbp-field-error', id: errorId, dataset: { field: field.name } });
    inputs.set(field.name, input);
    errors.set(field.name, error);
    const label = h('label', { for: id, class: 'cbp-label' }, field.label);
    return field.type === 'checkbox'
      ? h('div', { class: 'cbp-field cbp-field-check' }, input, label, error)
      : h('div', { class: 'cbp-field' }, label, input, error);
  });

  function clearErrors() {
    for (const [name, el] of errors) {
      el.textContent = '';
      inputs.get(name).removeAttribute('aria-invalid');
    }
    formError.hidden = true;
    formError.replaceChildren();
  }

  function fieldError(wanted, message) {
    // "roles.7.0" (an item of a list) is shown beside "roles.7".
    let name = wanted;
    while (!errors.has(name) && name.includes('.')) name = name.slice(0, name.lastIndexOf('.'));
    const el = errors.get(name);
    if (!el) return false;
    el.textContent = message;
    inputs.get(name).setAttribute('aria-invalid', 'true');
    return true;
  }

  function showFormError(message, retry) {
    formError.hidden = false;
    formError.replaceChildren(...[h('p', { class: 'cbp-error' }, message),
      retry ? h('button', { type: 'button', class: 'cbp-btn cbp-retry', onclick: retry }, t('retry')) : null].filter(Boolean));
  }

  async function send() {
    if (busy) return;
    clearErrors();
    const values = {};
    let firstBad = null;
    for (const field of spec.fields) {
      if (field.type === 'heading') continue;
      const input = inputs.get(field.name);
      const problem = checkField(t, field, field.type === 'checkbox' ? input.checked : input.value);
      if (problem) {
        fieldError(field.name, problem);
        firstBad = firstBad || input;
        continue;
      }
      const value = readValue(field, input);
      if (value !== '' && value != null) values[field.name] = value;
    }
    if (firstBad) { firstBad.focus(); return; }
    busy = true;
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    form.classList.add('cbp-busy');
    try {
      const response = await spec.send(values, key);
      spec.done(response);
    } catch (failure) {
      if (!(failure instanceof ApiFailure)) { showFormError(t('error_unexpected')); throw failure; }
      // A definite refusal changed nothing, so the corrected form is a new request with a new key; after a
      // network error or 5xx the outcome is unknown and the retry must replay the same key.
      if (!failure.network) { key = newKey(); form.dataset.key = key; }
      let placed = false;
      for (const [name, reasons] of Object.entries(failure.fields || {})) {
        // A refusal the panel knows by its code is worded in the user's language; others as sent.
        const known = failure.code && t(`e_${failure.code}`) !== `e_${failure.code}` ? t(`e_${failure.code}`) : null;
        placed = fieldError(spec.fieldMap?.[name] || name, known || reasons.map((r) => t.reason(r)).join('; ')) || placed;
      }
      const unplaced = Object.keys(failure.fields || {}).filter((n) => ![...errors.keys()].some(
        (name) => (spec.fieldMap?.[n] || n) === name || (spec.fieldMap?.[n] || n).startsWith(`${name}.`)));
      if (failure.network) showFormError(errorText(t, failure), send); // same key: a replay, never a repeat
      else if (!placed || unplaced.length) showFormError(errorText(t, failure));
    } finally {
      busy = false;
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
      form.classList.remove('cbp-busy');
    }
  }

  const form = h('form', {
    class: 'cbp-form', novalidate: true, 'aria-label': spec.title, dataset: { form: spec.id, key },
    onsubmit: (event) => { event.preventDefault(); send(); },
  },
  h('h3', { class: 'cbp-form-title' }, spec.title),
  spec.intro ? h('p', { class: 'cbp-muted' }, spec.intro) : null,
  rows,
  formError,
  h('div', { class: 'cbp-form-actions' },
    submit,
    h('button', { type: 'button', class: 'cbp-btn', onclick: onCancel }, t('cancel'))));
  return form;
}
